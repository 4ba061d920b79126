"""The term's deadlines, extensions and late policy: ``course.yml`` at the course root.

Schema (every key optional except each assignment's ``due``; unknown keys are errors)::

    assignments:                      # folders of source/
      rnn_basics:
        due: 2026-11-20T18:00:00+01:00   # ISO 8601 with an offset (Z for UTC)
    extensions:                       # student -> assignment -> new due date and why
      student07:
        hello_ohlol:
          due: 2026-11-24T18:00:00+01:00
          reason: medical certificate
    late_policy:
      per_day: 10                     # percent off per started day late (0..100)
      max_days: 3                     # later than this many days: the score is 0
      applies_to: score               # score: percent of the student's score; max_score: of the maximum
      grace_minutes: 0                # submissions this late count as on time

Without ``late_policy`` a late submission loses nothing (it is still marked late). Without
``course.yml`` the gradebook's due dates and extensions are used as they are. Every problem is a
``TermError`` that names the file and line.
"""

from __future__ import annotations

import datetime
import math
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .course import CourseError

TERM_FILE = "course.yml"
APPLIES_TO = ("score", "max_score")
DAY_SECONDS = 86400


class TermError(CourseError):
    """``course.yml`` is malformed or names something the course does not have."""


@dataclass(frozen=True)
class LatePolicy:
    """``per_day`` percent off per started day late, up to ``max_days``; later: everything off."""

    per_day: float = 0.0
    max_days: int = 0
    applies_to: str = "score"
    grace_minutes: float = 0.0

    def penalty(self, score: float, max_score: float, seconds_late: float) -> float:
        """Points off a notebook scoring ``score`` of ``max_score``, submitted ``seconds_late`` after its due
        date (extension included); between 0 and ``score``."""
        if seconds_late <= self.grace_minutes * 60 or score <= 0:
            return 0.0
        days = math.ceil(seconds_late / DAY_SECONDS)
        if days > self.max_days:
            return float(score)
        base = score if self.applies_to == "score" else max_score
        return round(min(float(score), base * self.per_day / 100 * days), 6)

    def describe(self) -> str:
        of = "the score" if self.applies_to == "score" else "the maximum"
        grace = f", after {self.grace_minutes:g} minutes' grace" if self.grace_minutes else ""
        return f"{self.per_day:g}% of {of} per started day late{grace}, up to {self.max_days} days; later: 0"

    def as_dict(self) -> dict:
        return {"per_day": self.per_day, "max_days": self.max_days, "applies_to": self.applies_to,
                "grace_minutes": self.grace_minutes}


NO_PENALTY = LatePolicy()


@dataclass(frozen=True)
class Extension:
    due: datetime.datetime  # aware
    reason: str
    line: int


@dataclass
class Term:
    """What ``course.yml`` says; due dates are time-zone aware."""

    due: dict[str, datetime.datetime] = field(default_factory=dict)
    extensions: dict[str, dict[str, Extension]] = field(default_factory=dict)  # student -> assignment -> ext
    policy: LatePolicy | None = None
    lines: dict[str, int] = field(default_factory=dict)  # "due:A" / "extension:S:A" -> line

    def extension(self, student: str, assignment: str) -> Extension | None:
        return self.extensions.get(student, {}).get(assignment)

    def extension_delta(self, student: str, assignment: str) -> datetime.timedelta | None:
        """nbgrader's ``extension``: how much later than the assignment's due date this student's is."""
        ext = self.extension(student, assignment)
        if ext is None or assignment not in self.due:
            return None
        return ext.due - self.due[assignment]

    def granted(self) -> list[tuple[str, str, Extension]]:
        """(student, assignment, extension), sorted."""
        return [(s, a, e) for s, per in sorted(self.extensions.items()) for a, e in sorted(per.items())]


def utc_naive(when: datetime.datetime) -> datetime.datetime:
    """How nbgrader stores a time: naive UTC."""
    return when.astimezone(datetime.UTC).replace(tzinfo=None)


# ---------------------------------------------------------------- parsing

class _Reader:
    """Walks the YAML node tree (not the loaded values) so that every error can name its line."""

    def __init__(self, source: str):
        self.source = source

    def fail(self, node, message: str):
        line = node.start_mark.line + 1 if node is not None else 1
        raise TermError(f"{self.source}, line {line}: {message}")

    def mapping(self, node, what: str, keys: tuple[str, ...] | None = None) -> dict[str, tuple]:
        """key -> (key node, value node); duplicate keys and (with ``keys``) unknown keys are errors."""
        if not isinstance(node, yaml.MappingNode):
            self.fail(node, f"{what} must be a mapping of names to values")
        out: dict[str, tuple] = {}
        for key_node, value_node in node.value:
            if not isinstance(key_node, yaml.ScalarNode):
                self.fail(key_node, f"{what}: a key must be a plain name")
            key = key_node.value
            if key in out:
                self.fail(key_node, f"{what}: {key!r} appears twice")
            if keys is not None and key not in keys:
                self.fail(key_node, f"{what}: unknown key {key!r} (expected {', '.join(keys)})")
            out[key] = (key_node, value_node)
        return out

    def scalar(self, node, what: str) -> str:
        if not isinstance(node, yaml.ScalarNode) or node.value == "":
            self.fail(node, f"{what} must be a single value")
        return str(node.value)

    def date(self, node, what: str) -> datetime.datetime:
        text = self.scalar(node, what).strip()
        try:
            when = datetime.datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            self.fail(node, f"{what} {text!r} is not an ISO 8601 date and time (e.g. 2026-11-20T18:00:00+01:00)")
        if when.tzinfo is None:
            self.fail(node, f"{what} {text!r} has no time zone offset (add +01:00, Z, ...)")
        return when

    def number(self, node, what: str, low: float, high: float, whole: bool = False) -> float:
        text = self.scalar(node, what)
        try:
            value = int(text) if whole else float(text)
        except ValueError:
            self.fail(node, f"{what} {text!r} is not a {'whole ' if whole else ''}number")
        if not math.isfinite(value) or not low <= value <= high:
            self.fail(node, f"{what} {text} is out of range ({low:g} to {high:g})")
        return value


def parse_term(text: str, source: str = TERM_FILE, assignments: list[str] | None = None,
               students: set[str] | None = None) -> Term:
    """Parse and check ``course.yml``; ``assignments`` and ``students`` (when given) are the known names."""
    reader = _Reader(source)
    try:
        root = yaml.compose(text, Loader=yaml.SafeLoader)
    except yaml.YAMLError as exc:
        mark = getattr(exc, "problem_mark", None)
        where = f"line {mark.line + 1}" if mark is not None else "?"
        raise TermError(f"{source}, {where}: not valid YAML ({getattr(exc, 'problem', None) or exc})") from None
    term = Term()
    if root is None:
        return term
    top = reader.mapping(root, source, ("assignments", "extensions", "late_policy"))
    if "assignments" in top:
        for name, (key, node) in reader.mapping(top["assignments"][1], "assignments").items():
            if assignments is not None and name not in assignments:
                reader.fail(key, f"unknown assignment {name!r} (the course has {', '.join(assignments)})")
            fields = reader.mapping(node, f"assignment {name}", ("due",))
            if "due" not in fields:
                reader.fail(node, f"assignment {name} has no due date")
            term.due[name] = reader.date(fields["due"][1], f"the due date of {name}")
            term.lines[f"due:{name}"] = key.start_mark.line + 1
    if "late_policy" in top:
        fields = reader.mapping(top["late_policy"][1], "late_policy",
                                ("per_day", "max_days", "applies_to", "grace_minutes"))
        for needed in ("per_day", "max_days"):
            if needed not in fields:
                reader.fail(top["late_policy"][1], f"late_policy needs {needed}")
        applies_to = "score"
        if "applies_to" in fields:
            applies_to = reader.scalar(fields["applies_to"][1], "late_policy.applies_to")
            if applies_to not in APPLIES_TO:
                reader.fail(fields["applies_to"][1], f"late_policy.applies_to is {applies_to!r}: "
                                                     f"expected {' or '.join(APPLIES_TO)}")
        grace = reader.number(fields["grace_minutes"][1], "late_policy.grace_minutes", 0, 7 * 24 * 60) \
            if "grace_minutes" in fields else 0.0
        term.policy = LatePolicy(reader.number(fields["per_day"][1], "late_policy.per_day", 0, 100),
                                 int(reader.number(fields["max_days"][1], "late_policy.max_days", 0, 365, whole=True)),
                                 applies_to, grace)
    if "extensions" in top:
        for student, (key, node) in reader.mapping(top["extensions"][1], "extensions").items():
            if students is not None and student not in students:
                reader.fail(key, f"unknown student {student!r} (not in the gradebook or submitted/)")
            for name, (akey, anode) in reader.mapping(node, f"extensions of {student}").items():
                if name not in term.due:
                    known = "not an assignment of the course" if assignments is not None and name not in assignments \
                        else "it has no due date under assignments"
                    reader.fail(akey, f"extension of {student} for {name!r}: {known}")
                fields = reader.mapping(anode, f"extension of {student} for {name}", ("due", "reason"))
                if "due" not in fields or "reason" not in fields:
                    reader.fail(anode, f"the extension of {student} for {name} needs a due date and a reason")
                due = reader.date(fields["due"][1], f"the extended due date of {student} for {name}")
                if due <= term.due[name]:
                    reader.fail(fields["due"][1], f"the extended due date of {student} for {name} is not later "
                                                  f"than the assignment's ({term.due[name].isoformat()})")
                reason = reader.scalar(fields["reason"][1], "reason").strip()
                term.extensions.setdefault(student, {})[name] = Extension(due, reason, akey.start_mark.line + 1)
    return term


def known_students(root: Path) -> set[str]:
    """Students the course knows: the gradebook's and every folder of submitted/."""
    from .database import open_gradebook

    names = {p.name for p in (root / "submitted").iterdir() if p.is_dir()} if (root / "submitted").is_dir() else set()
    try:
        with open_gradebook(root) as gb:
            names |= {s.id for s in gb.students}
    except CourseError:
        pass
    return names


def load_term(root: Path) -> Term | None:
    """``course.yml`` at ``root``, checked against the course's assignments and students; None without one."""
    from .course import assignments

    path = Path(root) / TERM_FILE
    if not path.is_file():
        return None
    try:
        text = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise TermError(f"{path}: cannot be read ({exc})") from None
    return parse_term(text, str(path), assignments(root), known_students(root))


def late_days(seconds_late: float) -> int:
    """Started days late."""
    return math.ceil(seconds_late / DAY_SECONDS) if seconds_late > 0 else 0
