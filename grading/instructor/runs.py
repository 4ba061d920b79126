"""A grading run's journal: which submissions it set out to grade, and which it has recorded.

``reports/runs/<assignment>.json`` names the run and its students; ``reports/runs/<assignment>.log``
gets one line per submission the coordinator records (a verified grade or a grading error),
written and flushed right after the gradebook commit. A run stopped half-way (Ctrl-C, a lost
scheduler, a crash of the coordinator) is taken up by ``grade --resume``, which grades only the
students of that run with no line in the log. The log also shows that no submission was recorded
twice.
"""

from __future__ import annotations

import datetime
import json
import os
import secrets
from collections import Counter
from dataclasses import dataclass
from pathlib import Path

from .course import CourseError


class GradingInterrupted(Exception):
    """The run stopped before every submission was recorded (Ctrl-C, a lost scheduler); ``--resume`` goes on."""


@dataclass
class RunJournal:
    root: Path
    assignment: str
    run: str
    students: list[str]

    @property
    def folder(self) -> Path:
        return self.root / "reports" / "runs"

    @property
    def plan_path(self) -> Path:
        return self.folder / f"{self.assignment}.json"

    @property
    def log_path(self) -> Path:
        return self.folder / f"{self.assignment}.log"

    @classmethod
    def start(cls, root: Path, assignment: str, students: list[str]) -> RunJournal:
        """A new run of ``students`` (the previous run's journal is replaced)."""
        journal = cls(root, assignment, secrets.token_hex(6), sorted(students))
        journal.folder.mkdir(parents=True, exist_ok=True)
        journal.log_path.unlink(missing_ok=True)
        journal._write_plan(finished=False)
        return journal

    @classmethod
    def resume(cls, root: Path, assignment: str) -> RunJournal:
        """The last run of ``assignment``, to finish it; CourseError when there is none to resume."""
        path = root / "reports" / "runs" / f"{assignment}.json"
        try:
            plan = json.loads(path.read_text())
        except (OSError, ValueError):
            raise CourseError(f"nothing to resume: no run of {assignment} is recorded in {path.parent}") from None
        if plan.get("finished"):
            raise CourseError(f"nothing to resume: the last run of {assignment} ({plan.get('run')}) finished; "
                              "grade again without --resume")
        return cls(root, assignment, str(plan["run"]), [str(s) for s in plan["students"]])

    def _write_plan(self, finished: bool) -> None:
        plan = {"run": self.run, "assignment": self.assignment, "students": self.students, "finished": finished,
                "written": datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")}
        tmp = self.plan_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(plan, indent=1))
        os.replace(tmp, self.plan_path)

    def recorded(self) -> Counter:
        """student -> how many times this run recorded them (1 for every recorded student, never more)."""
        try:
            lines = self.log_path.read_text().splitlines()
        except OSError:
            return Counter()
        return Counter(line.split(" ", 1)[1] for line in lines if line.startswith(self.run + " "))

    def remaining(self) -> list[str]:
        done = self.recorded()
        return [s for s in self.students if s not in done]

    def record(self, student: str) -> None:
        with open(self.log_path, "a") as log:
            log.write(f"{self.run} {student}\n")
            log.flush()
            os.fsync(log.fileno())

    def finish(self) -> None:
        self._write_plan(finished=True)
