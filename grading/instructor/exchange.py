"""nbgrader's file exchange on the class hub, and the course root closed to students.

Everything here runs as root: ``python -m grading setup-exchange``, ``release-assignment A``,
``collect A`` and ``release-feedback A``. Layout (nbgrader's, under ``GradingSettings.exchange_root``)
and permissions, nbgrader's documented ones except where a comment says why::

    <exchange_root>                root:root         1777  every account writes (students' nbgrader insists);
                                                           sticky: nobody renames or removes a folder it does
                                                           not own, such as another course's
    <exchange_root>/<course_id>    root:instructors  0755
        outbound/                  root:instructors  0755  released assignments: students read, never write
        inbound/                   root:instructors  3773  students create submissions (-wx) but cannot list;
                                                           setgid: submissions get the group instructors;
                                                           sticky: nobody renames another's submission
            <student>+<A>+<time>+<random>/   student:instructors 2770, files 0640 (grading.student.exchange)
        feedback/                  root:instructors  0751  students traverse (--x), never list
            <hash>.html            student:instructors 0640  readable by its student only

The course root (``secure_course_root``) and everything in it: group ``instructors``, no access for
others, no group write (root runs the course's config and code: an instructor must not change them),
group read kept only where it was (the hub's 0600 secrets stay 0600); folders setgid, so what root
writes later belongs to the group. ``.grading_secret`` is root's alone (0600).

``collect`` trusts nothing in the inbound: a folder counts only if it is a real folder owned by the
student it names (a student cannot submit in another's name), symbolic links, devices, FIFOs and
hard links inside it are left out (root never copies what a link points to), and its time is the
one it states only when that agrees with when its files were last changed (a student cannot
back-date a late submission).
"""

from __future__ import annotations

import datetime
import os
import pwd
import re
import secrets
import shutil
import stat
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

from traitlets.config import Config

from .course import CourseError, load_config, open_api, working_directory
from .roster import INSTRUCTORS, USER_NAME, ensure_group, gradebook_url, require_root
from .settings import GradingSettings, load_settings
from .term import load_term, utc_naive

COURSE_ID = "rnn-course"
STUDENTS_CONFIG = Path("/etc/jupyter/nbgrader_config.py")
PRIVATE_SUBMIT = "grading.student.exchange.PrivateSubmit"
ROOT_MODE, COURSE_MODE, OUTBOUND_MODE, INBOUND_MODE, FEEDBACK_MODE = 0o1777, 0o755, 0o755, 0o3773, 0o751
FEEDBACK_FILE_MODE, COLLECTED_FILE_MODE, COLLECTED_DIR_MODE = 0o640, 0o640, 0o2750
# A submission's stated time counts when it is within this of the last change of its files.
TIME_GRACE = datetime.timedelta(seconds=120)
TIMESTAMP_FORMAT = "%Y-%m-%d %H:%M:%S.%f UTC"
COURSE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
MAX_FILES = 10_000
MAX_DEPTH = 16  # folders inside a submission
MAX_SECRET_BYTES = 1024
HEX = re.compile(r"[0-9a-fA-F]{16,512}")
STUDENTS_CONFIG_TEXT = '''"""nbgrader settings for every account on the class hub: the Assignments panel, Validate and
nbgrader fetch_assignment / submit / fetch_feedback read them. Written by python -m grading."""

c = get_config()  # noqa: F821
c.CourseDirectory.course_id = {course_id!r}
c.Exchange.root = {exchange_root!r}
# Submissions readable by their student and the instructors only (nbgrader's default: by anyone).
c.ExchangeFactory.submit = {submit!r}
c.Execute.timeout = {timeout}
'''


@dataclass
class CollectedSubmission:
    """The submission of one student copied to ``folder`` (submitted/<student>/<assignment>)."""

    student: str
    folder: Path
    timestamp: datetime.datetime  # UTC, naive, as written to timestamp.txt
    late: bool
    seconds_late: float
    notes: list[str] = field(default_factory=list)


@dataclass
class _Candidate:
    student: str
    uid: int
    path: Path
    timestamp: datetime.datetime
    notes: list[str] = field(default_factory=list)


# ---------------------------------------------------------------- setting up


def course_id_of(root: Path) -> str:
    """The course id in the course's nbgrader_config.py."""
    config = load_config(root)
    course_id = config.CourseDirectory.course_id if "course_id" in config.CourseDirectory else ""
    if not isinstance(course_id, str) or not COURSE_NAME.fullmatch(course_id):
        raise CourseError(f"{root / 'nbgrader_config.py'}: c.CourseDirectory.course_id must be a plain name, "
                          f"e.g. {COURSE_ID!r}")
    return course_id


def exchange_course_dir(settings: GradingSettings, course_id: str = COURSE_ID) -> Path:
    return Path(settings.exchange_root) / course_id


def _owned_dir(path: Path, gid: int, mode: int) -> None:
    """Create ``path`` (root-owned) or check that it is a real folder of root's; then set its group and mode."""
    try:
        os.mkdir(path, 0o700)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if not stat.S_ISDIR(st.st_mode) or st.st_uid != 0:
        owner = _user_name(st.st_uid)
        kind = "folder" if stat.S_ISDIR(st.st_mode) else "symbolic link" if stat.S_ISLNK(st.st_mode) else "file"
        raise CourseError(f"{path} is a {kind} owned by {owner}, not a folder of root's: another account made it; "
                          f"check and remove it, then run this again")
    fd = os.open(path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(fd).st_ino != st.st_ino:
            raise CourseError(f"{path} changed while being set up: run this again")
        os.fchown(fd, 0, gid)
        os.fchmod(fd, mode)
    finally:
        os.close(fd)


def _user_name(uid: int) -> str:
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return f"uid {uid}"


def setup_exchange(settings: GradingSettings, course_id: str = COURSE_ID, group: str = INSTRUCTORS) -> Path:
    """Create (or repair) the exchange root and the course's folder in it; return the course's folder."""
    require_root("setting up the exchange")
    if not COURSE_NAME.fullmatch(course_id):
        raise CourseError(f"course id {course_id!r} is not a plain name")
    root = Path(settings.exchange_root)
    if not root.is_absolute():
        raise CourseError(f"the exchange root {root} must be an absolute path (GradingSettings.exchange_root)")
    for parent in reversed(root.parents):
        if not parent.exists():
            parent.mkdir(mode=0o755)
        if not os.stat(parent).st_mode & 0o001:
            raise CourseError(f"{parent} cannot be traversed by other accounts: students could not reach the "
                              f"exchange {root} (chmod o+x {parent}, or choose another exchange_root)")
    gid = ensure_group(group)
    _owned_dir(root, 0, ROOT_MODE)
    course = root / course_id
    _owned_dir(course, gid, COURSE_MODE)
    _owned_dir(course / "outbound", gid, OUTBOUND_MODE)
    _owned_dir(course / "inbound", gid, INBOUND_MODE)
    _owned_dir(course / "feedback", gid, FEEDBACK_MODE)
    return course


def _closed_mode(mode: int, is_dir: bool) -> int:
    """The owner's bits kept, the group's read and execute kept (never widened: a 0600 file stays 0600; write
    dropped: nothing root runs can be changed by an instructor), nothing for others; folders setgid."""
    return (mode & 0o750) | (0o2000 if is_dir else 0)


def secure_course_root(root: Path, group: str = INSTRUCTORS) -> None:
    """Close the course root to everyone but root and ``group``; the verifier's secret to all but root."""
    from .verifier import SECRET_FILE, course_secret

    require_root("closing the course root")
    root = Path(root).resolve()
    load_config(root)  # only ever a course root
    gid = ensure_group(group)
    course_secret(root)  # created now, root's, if it was missing
    _close_entry(str(root), None, -1, gid, None)
    # The grader's own environment may live in the course root (a checkout used as the course): the sandboxed
    # kernels read it as another uid, so it keeps its modes; the closed root already keeps students out of it.
    environment = Path(sys.prefix).resolve()
    for dirpath, dirnames, filenames, dirfd in os.fwalk(root, follow_symlinks=False):
        dirnames[:] = [d for d in dirnames if (Path(dirpath) / d).resolve() != environment]
        for name in dirnames + filenames:
            _close_entry(name, dirfd, -1, gid, None)
    _close_entry(str(root / SECRET_FILE), None, 0, gid, 0o600)


def _close_entry(name: str, dirfd: int | None, uid: int, gid: int, mode: int | None) -> None:
    """Set the group (and owner) of one entry, and its mode (``_closed_mode`` unless given), never through a link."""
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if stat.S_ISLNK(st.st_mode):
        return
    if not (stat.S_ISREG(st.st_mode) or stat.S_ISDIR(st.st_mode)):  # FIFO, socket, device: never opened
        os.chown(name, uid, gid, dir_fd=dirfd, follow_symlinks=False)
        os.chmod(name, _closed_mode(st.st_mode, False), dir_fd=dirfd, follow_symlinks=False)
        return
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        now = os.fstat(fd)
        if (now.st_dev, now.st_ino) != (st.st_dev, st.st_ino):
            raise CourseError(f"{name} changed while the course root was being closed: run this again")
        os.fchown(fd, uid, gid)
        os.fchmod(fd, _closed_mode(now.st_mode, stat.S_ISDIR(now.st_mode)) if mode is None else mode)
    finally:
        os.close(fd)


# ---------------------------------------------------------------- releasing


def _exchange_api(root: Path, settings: GradingSettings, force: bool = False):
    """nbgrader's API for the course, on the hub's exchange."""
    extra = Config()
    extra.Exchange.root = settings.exchange_root
    extra.ExchangeReleaseAssignment.force = force
    return open_api(root, extra)


def _log_tail(result: dict) -> str:
    """nbgrader's own messages of a failed call (its log), else the last line of its traceback."""
    lines = [line.strip() for line in (result.get("log") or "").splitlines() if line.strip()]
    if not lines:
        lines = [line.strip() for line in (result.get("error") or "").splitlines() if line.strip()][-1:]
    return "\n".join(lines[-6:])


def parse_due(due: str) -> datetime.datetime:
    """A due date as nbgrader stores it (naive UTC), e.g. from "2026-12-01 17:00:00 Europe/Paris"."""
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(due)
    except (ValueError, OverflowError) as exc:
        raise CourseError(f"due date {due!r} is not a date and time ({exc})") from None


def set_due_date(root: Path, assignment: str, due: str) -> datetime.datetime:
    """Record ``due`` (UTC when no zone is given) in the gradebook: collect marks later submissions late."""
    from nbgrader.api import Gradebook

    when = parse_due(due)
    with Gradebook(gradebook_url(root), course_id_of(root)) as gb:
        gb.update_or_create_assignment(assignment, duedate=when)
    return when


def due_date(root: Path, assignment: str) -> datetime.datetime | None:
    from nbgrader.api import Gradebook, MissingEntry

    with Gradebook(gradebook_url(root), course_id_of(root)) as gb:
        try:
            return gb.find_assignment(assignment).duedate
        except MissingEntry:
            return None


def release_assignment(root: Path, assignment: str, force: bool = False, due: str | None = None) -> Path:
    """nbgrader's release_assignment of ``release/<assignment>`` into the exchange's outbound."""
    require_root("release-assignment")
    _check_assignment(assignment)
    root = Path(root).resolve()
    settings = load_settings(root)
    course = exchange_course_dir(settings, course_id_of(root))
    if not (course / "outbound").is_dir():
        raise CourseError(f"the exchange has no folder {course}/outbound: run python -m grading setup-exchange")
    if not (root / "release" / assignment).is_dir():
        raise CourseError(f"no release/{assignment} in {root}: run python -m grading release first")
    if due is not None:
        parse_due(due)  # refused before anything is released
    term = load_term(root)
    if term is not None and assignment in term.due:
        if due is not None and parse_due(due) != utc_naive(term.due[assignment]):
            raise CourseError(f"course.yml (line {term.lines['due:' + assignment]}) says {assignment} is due "
                              f"{term.due[assignment].isoformat()}: change it there, not with --due")
        due = term.due[assignment].isoformat()
    api = _exchange_api(root, settings, force)
    with working_directory(root):
        result = api.release_assignment(assignment)
    if not result["success"]:
        hint = "\n(add --force to replace the released version)" if "already exists" in _log_tail(result) else ""
        raise CourseError(f"nbgrader could not release {assignment}:\n{_log_tail(result)}{hint}")
    if due is not None:
        set_due_date(root, assignment, due)
    return course / "outbound" / assignment


# ---------------------------------------------------------------- collecting


def _check_assignment(assignment: str) -> None:
    if not COURSE_NAME.fullmatch(assignment) or "+" in assignment:
        raise CourseError(f"assignment {assignment!r} is not a plain folder name")


def _parse_time(text: str) -> datetime.datetime | None:
    from nbgrader.utils import parse_utc

    try:
        return parse_utc(text)
    except (ValueError, OverflowError):
        return None


def _utc(seconds: float) -> datetime.datetime:
    return datetime.datetime.fromtimestamp(seconds, datetime.UTC).replace(tzinfo=None)


def _candidate(path: Path, assignment: str) -> _Candidate | str | None:
    """The inbound folder ``path`` as a submission of ``assignment``, the reason it is refused, or None (another
    assignment's)."""
    parts = path.name.split("+")
    if len(parts) < 3 or parts[1] != assignment:
        return None
    if len(parts) > 4:
        return "not a submission name (student+assignment+time+random)"
    student, stated = parts[0], _parse_time(parts[2])
    if not USER_NAME.fullmatch(student):
        return f"{student!r} is not a user name"
    if stated is None:
        return f"{parts[2]!r} is not a time"
    try:
        uid = pwd.getpwnam(student).pw_uid
    except KeyError:
        return f"there is no account {student!r}"
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode) or not stat.S_ISDIR(st.st_mode):
        return "not a folder (a symbolic link or a file): never followed"
    if st.st_uid != uid:
        return f"it names {student} but belongs to {_user_name(st.st_uid)}: not collected"
    changed, count = st.st_ctime, 0
    for dirpath, dirnames, filenames in os.walk(path):
        if len(Path(dirpath).relative_to(path).parts) >= MAX_DEPTH and dirnames:
            return f"folders nested deeper than {MAX_DEPTH}"
        for name in dirnames + filenames:
            count += 1
            entry = os.lstat(os.path.join(dirpath, name))
            changed = max(changed, entry.st_ctime)
            if entry.st_uid != uid:
                return f"{name!r} inside belongs to {_user_name(entry.st_uid)}, not {student}: not collected"
        if count > MAX_FILES:
            return f"more than {MAX_FILES} files"
    candidate = _Candidate(student, uid, path, stated)
    _trust_time(candidate, _utc(changed))
    return candidate


def _trust_time(candidate: _Candidate, changed: datetime.datetime) -> None:
    """Keep the stated time only when it agrees with the last change of the files; else the change time."""
    if abs(changed - candidate.timestamp) > TIME_GRACE:
        candidate.notes.append(f"stated time {candidate.timestamp:%Y-%m-%d %H:%M:%S} UTC differs from the last change "
                               f"of its files, {changed:%Y-%m-%d %H:%M:%S} UTC: the latter counts")
        candidate.timestamp = changed


def _copy_submission(candidate: _Candidate, dest: Path, gid: int, ignore: list[str], max_file: int,
                     max_total: int) -> None:
    """Copy the submission's regular files (owned by the student, never through a link) into a new ``dest``."""
    import fnmatch

    total, changed = 0, candidate.timestamp
    top = os.open(candidate.path, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC)
    try:
        if os.fstat(top).st_uid != candidate.uid:
            raise CourseError(f"{candidate.path} changed owner while being collected")
        for dirpath, dirnames, filenames, dirfd in os.fwalk(".", dir_fd=top, follow_symlinks=False):
            if len(Path(dirpath).parts) > MAX_DEPTH:
                raise CourseError(f"{candidate.path}: folders nested deeper than {MAX_DEPTH}")
            target = dest / dirpath
            _make_collected_dir(target, gid)
            dirnames[:] = [d for d in dirnames if not any(fnmatch.fnmatch(d, g) for g in ignore)]
            changed = max(changed, _utc(os.fstat(dirfd).st_ctime))
            for name in filenames:
                if any(fnmatch.fnmatch(name, g) for g in ignore) or (dirpath == "." and name == "timestamp.txt"):
                    continue
                data, problem, when = _read_owned(name, dirfd, candidate.uid, max_file)
                if problem:
                    candidate.notes.append(f"{os.path.normpath(os.path.join(dirpath, name))}: {problem}")
                    continue
                total += len(data)
                if total > max_total:
                    raise CourseError(f"{candidate.path}: more than {max_total} bytes")
                changed = max(changed, when)
                _write_collected(target / name, data, gid)
    finally:
        os.close(top)
    if changed - candidate.timestamp > TIME_GRACE:
        _trust_time(candidate, changed)


def _read_owned(name: str, dirfd: int, uid: int, max_file: int) -> tuple[bytes, str | None, datetime.datetime]:
    """A regular file's bytes, if it is a regular file of ``uid``'s with one link and at most ``max_file`` bytes."""
    now = datetime.datetime.now(datetime.UTC).replace(tzinfo=None)
    st = os.stat(name, dir_fd=dirfd, follow_symlinks=False)
    if not stat.S_ISREG(st.st_mode):
        return b"", "not a regular file (a link, FIFO or device): left out", now
    fd = os.open(name, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC, dir_fd=dirfd)
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode) or st.st_uid != uid:
            return b"", "not a regular file of the student's: left out", now
        if st.st_nlink != 1:
            return b"", "a hard link: left out", now
        if st.st_size > max_file:
            return b"", f"larger than {max_file} bytes: left out", now
        with os.fdopen(os.dup(fd), "rb") as fh:
            data = fh.read(max_file + 1)
        if len(data) > max_file:
            return b"", f"larger than {max_file} bytes: left out", now
        return data, None, _utc(os.fstat(fd).st_ctime)
    finally:
        os.close(fd)


def _make_collected_dir(path: Path, gid: int) -> None:
    path.mkdir(parents=True, exist_ok=True)
    os.chown(path, 0, gid)
    os.chmod(path, COLLECTED_DIR_MODE)


def _write_collected(path: Path, data: bytes, gid: int) -> None:
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    with os.fdopen(fd, "wb") as fh:
        fh.write(data)
        os.fchown(fh.fileno(), 0, gid)
        os.fchmod(fh.fileno(), COLLECTED_FILE_MODE)


def _exchange_folder(root: Path, assignment: str, folder: str, action: str) -> tuple[Path, Path]:
    """(the resolved course root, its exchange ``folder``) for ``action`` run as root on a valid assignment id."""
    require_root(action)
    _check_assignment(assignment)
    root = Path(root).resolve()
    path = exchange_course_dir(load_settings(root), course_id_of(root)) / folder
    if not path.is_dir():
        raise CourseError(f"no exchange {folder} folder {path}: run python -m grading setup-exchange")
    return root, path


def collect(root: Path, assignment: str, log: Callable[[str], None] = print,
            group: str = INSTRUCTORS) -> list[CollectedSubmission]:
    """The latest submission of each student, from the exchange's inbound into submitted/<student>/<assignment>/.

    A submission after the student's due date (course.yml's, extension included, else the gradebook's) is
    collected and marked late; the time written to its timestamp.txt is the one nbgrader's autograde records."""
    root, inbound = _exchange_folder(root, assignment, "inbound", "collect")
    api = open_api(root)
    ignore = list(api.coursedir.ignore)
    max_file, max_total = 1000 * api.coursedir.max_file_size, 1000 * api.coursedir.max_dir_size
    gid = ensure_group(group)
    term = load_term(root)
    due = utc_naive(term.due[assignment]) if term and assignment in term.due else due_date(root, assignment)
    latest: dict[str, _Candidate] = {}
    for path in sorted(inbound.iterdir()):
        try:
            found = _candidate(path, assignment)
        except OSError as exc:  # removed or changed while being looked at
            found = f"could not be read ({exc.strerror})"
        if isinstance(found, str):
            log(f"ignored {path.name}: {found}")
        elif found is not None and (found.student not in latest or found.timestamp > latest[found.student].timestamp):
            latest[found.student] = found
    collected = []
    for student, candidate in sorted(latest.items()):
        folder = root / "submitted" / student / assignment
        staging = folder.parent / f".{assignment}.collecting-{secrets.token_hex(4)}"
        _make_collected_dir(folder.parent, gid)
        try:
            _copy_submission(candidate, staging, gid, ignore, max_file, max_total)
            _write_collected(staging / "timestamp.txt", candidate.timestamp.strftime(TIMESTAMP_FORMAT).encode(), gid)
            if folder.exists() or folder.is_symlink():
                shutil.rmtree(folder) if folder.is_dir() and not folder.is_symlink() else folder.unlink()
            staging.rename(folder)
        except (OSError, CourseError, RecursionError) as exc:
            shutil.rmtree(staging, ignore_errors=True)
            log(f"not collected {candidate.path.name}: {exc}")
            continue
        extension = term.extension(student, assignment) if term else None
        student_due = utc_naive(extension.due) if extension else due
        late = student_due is not None and candidate.timestamp > student_due
        seconds = (candidate.timestamp - student_due).total_seconds() if late else 0.0
        collected.append(CollectedSubmission(student, folder, candidate.timestamp, late, seconds, candidate.notes))
    return collected


# ---------------------------------------------------------------- feedback


def _submission_secret(root: Path, student: str, assignment: str) -> str | None:
    """The collected submission's secret (from which nbgrader names the student's feedback), if it is one."""
    path = root / "submitted" / student / assignment / "submission_secret.txt"
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC)
    except OSError:
        return None
    with os.fdopen(fd, "rb") as fh:
        if not stat.S_ISREG(os.fstat(fh.fileno()).st_mode):
            return None
        text = fh.read(MAX_SECRET_BYTES).decode("ascii", "replace").strip()
    return text if HEX.fullmatch(text) else None


def _install(data: bytes, dest: Path, uid: int, gid: int, mode: int) -> None:
    """Write ``dest`` atomically, owned by ``uid``:``gid`` with ``mode`` from the first byte on."""
    tmp = dest.with_name(f".{dest.name}.{secrets.token_hex(6)}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW | os.O_CLOEXEC, 0o600)
    try:
        with os.fdopen(fd, "wb") as fh:
            os.fchown(fh.fileno(), uid, gid)
            os.fchmod(fh.fileno(), mode)
            fh.write(data)
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def release_feedback(root: Path, assignment: str, log: Callable[[str], None] = print,
                     group: str = INSTRUCTORS) -> list[Path]:
    """Put feedback/<student>/<assignment>/*.html where ``nbgrader fetch_feedback`` finds it, one file per
    notebook, owned by its student and unreadable by other students."""
    from nbgrader.utils import notebook_hash

    root, out = _exchange_folder(root, assignment, "feedback", "release-feedback")
    gid = ensure_group(group)
    source = root / "feedback"
    released: list[Path] = []
    students = sorted(p.name for p in source.iterdir() if p.is_dir() and not p.is_symlink()) if source.is_dir() else []
    for student in students:
        folder = source / student / assignment
        if not USER_NAME.fullmatch(student) or folder.is_symlink() or not folder.is_dir():
            continue
        try:
            uid = pwd.getpwnam(student).pw_uid
        except KeyError:
            log(f"{student}: no account on this machine: feedback not released")
            continue
        secret = _submission_secret(root, student, assignment)
        if secret is None:
            log(f"{student}: the graded submission was not collected from the exchange: feedback not released")
            continue
        for html in sorted(folder.glob("*.html")):
            if html.is_symlink() or not html.is_file():
                continue
            dest = out / f"{notebook_hash(secret=secret, notebook_id=html.stem)}.html"
            _install(html.read_bytes(), dest, uid, gid, FEEDBACK_FILE_MODE)
            released.append(dest)
    return released


# ---------------------------------------------------------------- students' nbgrader settings


def students_nbgrader_config(settings: GradingSettings, root: Path | None = None) -> str:
    """The text of the students' system-wide nbgrader_config.py: course id, exchange root, private submit, and
    Validate's cell timeout, from the course root's nbgrader_config.py (default: this checkout's)."""
    from .sandbox import PACKAGE_ROOT

    root = PACKAGE_ROOT if root is None else Path(root)
    config = load_config(root)
    timeout = config.Execute.timeout if "timeout" in config.Execute else 30
    return STUDENTS_CONFIG_TEXT.format(course_id=course_id_of(root), exchange_root=str(settings.exchange_root),
                                       submit=PRIVATE_SUBMIT, timeout=int(timeout))


def install_students_config(settings: GradingSettings, path: Path = STUDENTS_CONFIG, root: Path | None = None) -> Path:
    """Write the students' nbgrader config (root-owned, world-readable: every server reads it)."""
    path = Path(path)
    path.parent.mkdir(mode=0o755, parents=True, exist_ok=True)
    _install(students_nbgrader_config(settings, root).encode(), path, os.geteuid(), os.getegid(), 0o644)
    return path



# ---------------------------------------------------------------- command line


def _setup(root: Path) -> GradingSettings:
    settings = load_settings(root)
    course = setup_exchange(settings, course_id_of(root))
    secure_course_root(root)
    print(f"exchange: {course} (outbound, inbound, feedback); course root {root} closed to all but {INSTRUCTORS}")
    return settings


def cmd_setup_exchange(args) -> int:
    _setup(Path(args.root).resolve())
    return 0


def cmd_release_assignment(args) -> int:
    root = Path(args.root).resolve()
    _setup(root)
    released = release_assignment(root, args.assignment, force=args.force, due=args.due)
    print(f"released {args.assignment} to {released}")
    due = due_date(root, args.assignment)
    print(f"due {due:%Y-%m-%d %H:%M:%S} UTC" if due else "no due date (collect marks nothing late)")
    return 0


def cmd_collect(args) -> int:
    root = Path(args.root).resolve()
    collected = collect(root, args.assignment)
    for c in collected:
        late = f"LATE by {c.seconds_late / 3600:.1f} h" if c.late else "on time"
        print(f"  {c.student:<20} {c.timestamp:%Y-%m-%d %H:%M:%S} UTC  {late}")
        for note in c.notes:
            print(f"      {note}")
    late = sum(c.late for c in collected)
    print(f"collected {len(collected)} submissions of {args.assignment} ({late} late) into {root / 'submitted'}"
          if collected else f"no submission of {args.assignment} in the exchange")
    return 0


def cmd_release_feedback(args) -> int:
    root = Path(args.root).resolve()
    released = release_feedback(root, args.assignment)
    if not released:
        raise CourseError(f"no feedback of {args.assignment} to release: run python -m grading grade "
                          f"{args.assignment} after collect")
    print(f"released {len(released)} feedback files of {args.assignment}; students run nbgrader fetch_feedback "
          f"(or the Assignments panel)")
    return 0


def add_exchange_commands(sub, command, root_parser) -> None:
    """``setup-exchange``, ``release-assignment``, ``collect``, ``release-feedback``: run as root."""
    command(sub, "setup-exchange", cmd_setup_exchange, "create the exchange (GradingSettings.exchange_root) and close "
            "the course root to students (as root; release-assignment does it too)", root_parser)
    p = command(sub, "release-assignment", cmd_release_assignment, "release release/ASSIGNMENT to the exchange, "
                "where students fetch it (as root)", root_parser)
    p.add_argument("assignment", help="assignment id, a folder of release/")
    p.add_argument("--force", action="store_true", help="replace an earlier release")
    p.add_argument("--due", help='due date, e.g. "2026-12-01 17:00:00 Europe/Paris" (UTC when no zone is given): '
                   "collect marks later submissions late")
    p = command(sub, "collect", cmd_collect, "copy each student's latest submission from the exchange into "
                "submitted/ (as root)", root_parser)
    p.add_argument("assignment", help="assignment id")
    p = command(sub, "release-feedback", cmd_release_feedback, "give each student their feedback of ASSIGNMENT "
                "through the exchange (as root)", root_parser)
    p.add_argument("assignment", help="assignment id")
