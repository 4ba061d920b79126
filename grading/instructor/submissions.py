"""Read what students handed in, defensively, into a staged copy that nbgrader grades.

The instructor's ``submitted/`` is never modified. Each submission is copied to a staging
folder with only what can be graded: readable notebooks (older nbformat versions are
upgraded), under their release names (a renamed notebook is recognised by its solution
cells), plus nbgrader's timestamp. Everything odd is recorded as an anomaly with a reason.

A student may have read this code. Symbolic links are never followed (a linked submission
folder is not graded), only regular files are opened (never a FIFO, device or socket), every
read is capped, and no notebook content can make staging raise: whatever goes wrong with one
notebook becomes a short reason that names the file, never a host path.
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import re
import shutil
import stat
from dataclasses import dataclass, field
from pathlib import Path

import nbformat

from .messages import clean_text
from .normalize import normalize

MAX_NOTEBOOK_BYTES = 8 * 2**20
MAX_ENTRIES = 64  # notebooks read from one submission
MAX_SUBMISSION_BYTES = 4 * MAX_NOTEBOOK_BYTES  # all the notebooks read from one submission
MAX_SCANNED = 4096  # directory entries looked at in one submission folder
MAX_CELLS = 2000
MAX_DEPTH = 64  # nesting of JSON arrays and objects
MAX_TIMESTAMP_BYTES = 1024
LINKED = "the submission folder is a symbolic link: not graded"

_OPEN_FILE = os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK | os.O_CLOEXEC
_OPEN_DIR = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
_KINDS = ((stat.S_ISLNK, "symlink"), (stat.S_ISFIFO, "FIFO"), (stat.S_ISDIR, "directory"),
          (stat.S_ISSOCK, "socket"), (stat.S_ISCHR, "device"), (stat.S_ISBLK, "device"))
# A JSON string, or an unterminated one up to the end: every opening quote matches, in linear time.
_JSON_STRINGS = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*(?:"|\\?\Z)', re.S)
_NOT_BRACKETS = re.compile(r"[^\[\]{}]+")
_TIMESTAMP = re.compile(r"(\d{4}-\d{2}-\d{2}[T ]\d{2}:\d{2}:\d{2}(?:\.\d{1,6})?)(Z|[+-]\d{2}:\d{2}| [A-Za-z]{1,6})?")


@dataclass
class StagedSubmission:
    student: str
    assignment: str
    notebooks: list[str] = field(default_factory=list)  # notebook names that will be graded
    anomalies: dict[str, list[str]] = field(default_factory=dict)  # notebook (or "*") -> reasons

    def note(self, notebook: str, reason: str) -> None:
        self.anomalies.setdefault(notebook, []).append(reason)


class _Linked(Exception):
    """A submission folder (the student's or the assignment's) is a symbolic link."""


# ---------------------------------------------------------------- reading one file


def _plain(text: object, limit: int) -> str:
    """One line of storable text."""
    return " ".join(clean_text(text, limit).split("\n"))


def _shown(name: str) -> str:
    """A file name as it may appear in a reason."""
    return _plain(name, 80)


def _kind(mode: int) -> str | None:
    """None for a regular file, else what it is."""
    if stat.S_ISREG(mode):
        return None
    return next((kind for test, kind in _KINDS if test(mode)), "special file")


def _read_capped(name: str, dir_fd: int | None, limit: int, size_text: str) -> tuple[bytes | None, str | None]:
    """At most ``limit`` bytes of a regular file (never a link, FIFO or device), or what is wrong with it."""
    kind = _kind(os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode)
    if kind:
        return None, f"not a regular file ({kind})"
    try:
        fd = os.open(name, _OPEN_FILE, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, "not a regular file (symlink)"
        return None, f"unreadable ({type(exc).__name__})"
    try:
        info = os.fstat(fd)
        if _kind(info.st_mode):
            return None, f"not a regular file ({_kind(info.st_mode)})"
        if info.st_size > limit:
            return None, f"larger than {size_text}"
        data = _read_fd(fd, limit + 1)
    finally:
        os.close(fd)
    return (None, f"larger than {size_text}") if len(data) > limit else (data, None)


def _read_fd(fd: int, most: int) -> bytes:
    chunks, remaining = [], most
    while remaining > 0:
        chunk = os.read(fd, min(remaining, 2**20))
        if not chunk:
            break
        chunks.append(chunk)
        remaining -= len(chunk)
    return b"".join(chunks)


# ---------------------------------------------------------------- parsing one notebook


def _nesting_exceeds(text: str, most: int) -> bool:
    """Whether JSON arrays and objects nest deeper than ``most``, counted without recursion."""
    depth = 0
    for bracket in _NOT_BRACKETS.sub("", _JSON_STRINGS.sub("", text)):
        depth += 1 if bracket in "[{" else -1
        if depth > most:
            return True
    return False


def _structure_exceeds(value: object, most: int) -> bool:
    """Whether parsed JSON nests deeper than ``most`` (iterative walk)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = item.values() if isinstance(item, dict) else item if isinstance(item, list) else None
        if children is None:
            continue
        if depth > most:
            return True
        stack.extend((child, depth + 1) for child in children if isinstance(child, (dict, list)))
    return False


def _cell_count(raw: dict) -> int:
    if raw["nbformat"] == 3:
        sheets = raw.get("worksheets")
        return sum(len(s.get("cells") or []) for s in sheets if isinstance(s, dict)) if isinstance(sheets, list) else 0
    cells = raw.get("cells")
    return len(cells) if isinstance(cells, list) else 0


def _parse(data: bytes, shown: str) -> tuple[nbformat.NotebookNode | None, str | None]:
    """The notebook in ``data`` as nbformat v4, or None and the reason it cannot be graded."""
    too_deep = f"{shown} is nested too deeply (more than {MAX_DEPTH} levels)"
    try:
        text = data.decode("utf-8-sig")
        if _nesting_exceeds(text, MAX_DEPTH):
            return None, too_deep
        raw = json.loads(text)
    except RecursionError:
        return None, too_deep
    except ValueError as exc:  # JSONDecodeError, UnicodeDecodeError, an integer too long to convert
        return None, f"{shown} is not valid JSON ({exc.__class__.__name__}: {_plain(exc, 80)})"
    if _structure_exceeds(raw, MAX_DEPTH):
        return None, too_deep
    if not isinstance(raw, dict) or type(raw.get("nbformat")) is not int:
        return None, f"{shown} is not a Jupyter notebook (no nbformat version)"
    if raw["nbformat"] not in (3, 4):
        version = _plain(raw["nbformat"], 20)
        return None, f"{shown} has notebook format version {version}; only versions 3 and 4 can be graded"
    cells = _cell_count(raw)
    if cells > MAX_CELLS:
        return None, f"{shown} has {cells} cells; at most {MAX_CELLS} can be graded"
    try:
        nb = nbformat.reads(text, as_version=4)
        nbformat.validate(nb)
    except Exception as exc:  # noqa: BLE001 - nbformat raises many kinds
        return None, f"{shown} is not a valid notebook ({clean_text(exc, 120).split(chr(10))[0]})"
    return nb, None


def _load(name: str, dir_fd: int | None, shown: str) -> tuple[nbformat.NotebookNode | None, str | None]:
    try:
        data, problem = _read_capped(name, dir_fd, MAX_NOTEBOOK_BYTES, f"{MAX_NOTEBOOK_BYTES // 2**20} MB")
        return (None, f"{shown} is {problem}") if problem else _parse(data, shown)
    except RecursionError:
        return None, f"{shown} is nested too deeply (more than {MAX_DEPTH} levels)"
    except Exception as exc:  # noqa: BLE001 - whatever the file holds, staging goes on
        return None, f"{shown} could not be read ({type(exc).__name__})"


def read_notebook(path: Path) -> tuple[nbformat.NotebookNode | None, str | None]:
    """The notebook as nbformat v4, or None and the reason it cannot be graded (never raises)."""
    return _load(os.fspath(path), None, _shown(Path(path).name))


# ---------------------------------------------------------------- the submission folder


def _is_name(name: str) -> bool:
    """A single, ordinary path component."""
    return isinstance(name, str) and name not in ("", ".", "..") and "/" not in name and "\0" not in name


def _open_dir(name: str, dir_fd: int | None) -> int | None:
    """A descriptor of the folder ``name`` (not following a link), None if it is no folder."""
    try:
        mode = os.stat(name, dir_fd=dir_fd, follow_symlinks=False).st_mode
    except (FileNotFoundError, NotADirectoryError):
        return None
    if stat.S_ISLNK(mode):
        raise _Linked()
    if not stat.S_ISDIR(mode):
        return None
    try:
        return os.open(name, _OPEN_DIR, dir_fd=dir_fd)
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            raise _Linked() from None
        raise


def _open_submission(root: Path, student: str, assignment: str) -> int | None:
    """A descriptor of ``submitted/<student>/<assignment>``, None if there is none; raises _Linked."""
    try:
        base = os.open(root / "submitted", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except (FileNotFoundError, NotADirectoryError):
        return None
    try:
        student_fd = _open_dir(student, base)
    finally:
        os.close(base)
    if student_fd is None:
        return None
    try:
        return _open_dir(assignment, student_fd)
    finally:
        os.close(student_fd)


def _exists(name: str, dir_fd: int) -> bool:
    try:
        os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return False
    return True


def _size(name: str, dir_fd: int) -> int:
    """The size of a regular file (0 for anything else, which is never read)."""
    try:
        info = os.stat(name, dir_fd=dir_fd, follow_symlinks=False)
    except OSError:
        return 0
    return info.st_size if stat.S_ISREG(info.st_mode) else 0


def _candidates(dir_fd: int, releases: set[str], result: StagedSubmission) -> list[str]:
    """The ``*.ipynb`` names to read: release names first, at most MAX_ENTRIES."""
    found, looked = set(), 0
    with os.scandir(dir_fd) as entries:
        for entry in entries:
            looked += 1
            if looked > MAX_SCANNED:
                result.note("*", f"the submission folder has more than {MAX_SCANNED} entries: "
                                 "the rest were not looked at")
                break
            if entry.name.endswith(".ipynb") and len(entry.name) > len(".ipynb"):
                found.add(entry.name)
    found.update(f"{stem}.ipynb" for stem in releases if _exists(f"{stem}.ipynb", dir_fd))
    ordered = sorted(found, key=lambda n: (n[:-len(".ipynb")] not in releases, n))
    if len(ordered) > MAX_ENTRIES:
        result.note("*", f"{len(ordered) - MAX_ENTRIES} more files ignored (at most {MAX_ENTRIES} notebooks are read)")
    return ordered[:MAX_ENTRIES]


def _sanitize(nb: nbformat.NotebookNode) -> int:
    """Drop nbgrader metadata that is not a dict with a string grade_id; how many cells had such."""
    dropped = 0
    for cell in nb.cells:
        meta = cell.get("metadata", {})
        if "nbgrader" not in meta:
            continue
        value = meta["nbgrader"]
        if not isinstance(value, dict) or not isinstance(value.get("grade_id", ""), str):
            del meta["nbgrader"]
            dropped += 1
    return dropped


def _read_all(dir_fd: int, releases: dict, result: StagedSubmission) -> dict[str, nbformat.NotebookNode]:
    """Every readable notebook of the submission, by stem; the others are noted as ungradable."""
    readable, budget = {}, MAX_SUBMISSION_BYTES
    for name in _candidates(dir_fd, set(releases), result):
        stem = name[:-len(".ipynb")]
        key = stem if stem in releases else "*"
        budget -= _size(name, dir_fd)
        if budget < 0:
            nb, problem = None, f"{_shown(name)} was not read (the notebooks add up to more than " \
                                f"{MAX_SUBMISSION_BYTES // 2**20} MB)"
        else:
            nb, problem = _load(name, dir_fd, _shown(name))
        if nb is not None and not problem:
            try:
                dropped = _sanitize(nb)
            except Exception as exc:  # noqa: BLE001 - whatever the notebook holds, staging goes on
                nb, problem = None, f"{_shown(name)} could not be read ({type(exc).__name__})"
            else:
                if dropped:
                    result.note(key, f"{dropped} cells of {_shown(name)} had malformed nbgrader metadata: "
                                     "kept as ordinary cells")
        if problem:
            result.note(key, f"ungradable: {problem}")
            continue
        readable[stem] = nb
    return readable


def _solution_ids(nb: nbformat.NotebookNode) -> set[str]:
    ids = set()
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader")
        grade_id = meta.get("grade_id") if isinstance(meta, dict) and meta.get("solution") else None
        if grade_id and isinstance(grade_id, str):
            ids.add(grade_id)
    return ids


def _stage_notebook(name: str, release, readable: dict, dst: Path, result: StagedSubmission) -> None:
    """Write the student's version of release notebook ``name`` (or note why there is none)."""
    nb = readable.pop(name, None)
    if nb is None:
        wanted = _solution_ids(release)
        renamed = [k for k, v in readable.items() if wanted and wanted <= _solution_ids(v)]
        if not renamed:
            if not any(r.startswith(f"ungradable: {name}.ipynb") for r in result.anomalies.get(name, [])):
                result.note(name, "missing from the submission: scored zero")
            return
        nb = readable.pop(renamed[0])
        result.note(name, f"the notebook was renamed to {_shown(renamed[0])}.ipynb: graded under its release name")
    _, repairs = normalize(nb, release)
    for repair in repairs:
        result.note(name, _plain(repair, 300))
    nbformat.write(nb, dst / f"{name}.ipynb")
    result.notebooks.append(name)


def _timestamp(dir_fd: int) -> tuple[str | None, str | None]:
    """nbgrader's timestamp of the submission, checked, or the reason it is ignored."""
    try:
        data, problem = _read_capped("timestamp.txt", dir_fd, MAX_TIMESTAMP_BYTES, "1 kB")
    except FileNotFoundError:
        return None, None
    except Exception as exc:  # noqa: BLE001 - an unreadable timestamp is ignored, never fatal
        return None, f"timestamp.txt ignored: unreadable ({type(exc).__name__})"
    if problem:
        return None, f"timestamp.txt ignored: {problem}"
    try:
        text = data.decode("utf-8").strip()
    except UnicodeDecodeError:
        return None, "timestamp.txt ignored: not UTF-8 text"
    return (text, None) if _is_timestamp(text) else (None, "timestamp.txt ignored: not a date and time")


def _is_timestamp(text: str) -> bool:
    """A date and time as nbgrader writes them, with a time zone nbgrader can read without opening a file."""
    match = _TIMESTAMP.fullmatch(text)
    if match is None:
        return False
    try:
        datetime.datetime.fromisoformat(match.group(1))
    except ValueError:
        return False
    return True


def stage(root: Path, staged_root: Path, assignment: str, student: str) -> StagedSubmission:
    """Copy one submission into ``staged_root/<student>/<assignment>/``, ready for nbgrader.

    Never raises because of what the submission holds."""
    result = StagedSubmission(student, assignment)
    if not _is_name(student) or not _is_name(assignment):
        result.note("*", "the student or assignment name is not a plain folder name: not graded")
        return result
    dst = staged_root / student / assignment
    shutil.rmtree(dst, ignore_errors=True)
    dst.mkdir(parents=True)
    releases = {p.stem: nbformat.read(p, as_version=4) for p in sorted((root / "release" / assignment).glob("*.ipynb"))}
    try:
        dir_fd = _open_submission(root, student, assignment)
    except _Linked:
        result.note("*", LINKED)
        return result
    except OSError as exc:
        result.note("*", f"the submission folder could not be opened ({type(exc).__name__}): not graded")
        return result
    try:
        _stage_folder(dir_fd, releases, dst, result)
    except OSError as exc:
        result.note("*", f"the submission folder could not be read ({type(exc).__name__})")
    finally:
        if dir_fd is not None:
            os.close(dir_fd)
    return result


def _stage_folder(dir_fd: int | None, releases: dict, dst: Path, result: StagedSubmission) -> None:
    readable = _read_all(dir_fd, releases, result) if dir_fd is not None else {}
    for name, release in releases.items():
        try:
            _stage_notebook(name, release, readable, dst, result)
        except Exception as exc:  # noqa: BLE001 - one odd notebook never stops the class
            (dst / f"{name}.ipynb").unlink(missing_ok=True)
            if name in result.notebooks:
                result.notebooks.remove(name)
            result.note(name, f"ungradable: {name}.ipynb could not be staged ({type(exc).__name__})")
    for extra in readable:
        result.note("*", f"extra notebook {_shown(extra)}.ipynb ignored")
    if dir_fd is not None:
        text, problem = _timestamp(dir_fd)
        if problem:
            result.note("*", problem)
        elif text:
            (dst / "timestamp.txt").write_text(text, encoding="utf-8")


def _has_submission(base: Path, entry: os.DirEntry, assignment: str) -> bool:
    """Whether a student folder holds ``assignment``: linked folders count (they are reported, not graded)."""
    if entry.is_symlink():
        return os.path.lexists(base / entry.name / assignment)
    if not entry.is_dir(follow_symlinks=False):
        return False
    try:
        mode = os.stat(base / entry.name / assignment, follow_symlinks=False).st_mode
    except OSError:
        return False
    return stat.S_ISDIR(mode) or stat.S_ISLNK(mode)


def students_with(root: Path, assignment: str) -> list[str]:
    """Students who have a folder (or a symbolic link) for ``assignment`` in submitted/."""
    base = root / "submitted"
    if not base.is_dir():
        return []
    with os.scandir(base) as entries:
        return sorted(e.name for e in entries if _has_submission(base, e, assignment))
