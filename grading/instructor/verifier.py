"""Out-of-kernel verification: the grade of every contract exercise is decided here.

For one submitted notebook: find each exercise's solution cell by grade_id, choose the
inputs (a per-submission seed from the course's secret, so nothing can be precomputed),
run the cell under the trusted harness in a fresh sandboxed process, and judge the plain
data it returns in this process against genuine torch. Verdicts are per test cell:
``None`` for a pass, else the diagnosis a student reads.
"""

from __future__ import annotations

import ast
import dataclasses
import hashlib
import hmac
import json
import os
import secrets
import signal
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from .exercises import EXERCISES, Exercise
from .sandbox import KernelServer

SECRET_FILE = ".grading_secret"
RESULT_LIMIT_BYTES = 50 * 2**20


@dataclass
class NotebookVerdicts:
    """What the verifier concluded for one notebook."""

    verdicts: dict[str, str | None] = field(default_factory=dict)  # test cell grade_id -> None | message
    exercise_of: dict[str, str] = field(default_factory=dict)  # test cell grade_id -> exercise grade_id
    seconds: float = 0.0


def course_secret(root: Path) -> bytes:
    """The course's verifier secret (created on first use, readable by the instructor only)."""
    path = root / SECRET_FILE
    if not path.exists():
        path.write_text(secrets.token_hex(32))
        path.chmod(0o600)
    return path.read_text().strip().encode()


def submission_seed(secret: bytes, assignment: str, student: str, notebook: str) -> int:
    """Deterministic per submission (regrading gives the same score), unknowable without the secret."""
    digest = hmac.new(secret, f"{assignment}/{student}/{notebook}".encode(), hashlib.sha256).digest()
    return int.from_bytes(digest[:4], "big") & 0x7FFFFFFF


def exercises_of(assignment: str, notebook: str) -> list[Exercise]:
    return [ex for ex in EXERCISES.values() if ex.assignment == assignment and ex.notebook == notebook]


def setup_imports(nb: NotebookNode) -> str:
    """The import statements of the notebook's read-only code cells, so a solution cell sees the
    same names in the harness as in the notebook (the cells come from the release: trusted)."""
    lines = []
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if cell.cell_type != "code" or not isinstance(meta, dict) or not meta.get("locked") or meta.get("grade"):
            continue
        try:
            tree = ast.parse(cell.source)
        except SyntaxError:
            continue
        lines += [ast.unparse(node) for node in tree.body if isinstance(node, (ast.Import, ast.ImportFrom))]
    return "\n".join(lines)


def solution_sources(nb: NotebookNode) -> dict[str, str]:
    """grade_id -> the student's source of that solution cell (split or duplicated cells merged, in order)."""
    sources: dict[str, list[str]] = {}
    for cell in nb.cells:
        meta = cell.get("metadata", {}).get("nbgrader", {})
        if isinstance(meta, dict) and meta.get("solution") and meta.get("grade_id"):
            sources.setdefault(meta["grade_id"], []).append(cell.get("source", ""))
    return {gid: "\n".join(parts) for gid, parts in sources.items()}


def verify_notebook(server: KernelServer, assignment: str, notebook: str, nb: NotebookNode, seed: int,
                    timeout_per_exercise: float = 60) -> NotebookVerdicts:
    """Verdicts for every test cell of the contract exercises in ``notebook``."""
    started = time.monotonic()
    result = NotebookVerdicts()
    exercises = exercises_of(assignment, notebook)
    if not exercises:
        return result
    sources = solution_sources(nb)
    to_run: list[tuple[Exercise, list]] = []
    for exercise in exercises:
        for tid in exercise.test_ids:
            result.exercise_of[tid] = exercise.grade_id
        source = sources.get(exercise.grade_id)
        if source is None:
            _fail_all(result, exercise, f"the solution cell {exercise.grade_id} is missing from the notebook")
            continue
        violation = exercise.scratch_violation_in_source(source)
        if violation:
            _fail_all(result, exercise, violation)
            continue
        to_run.append((exercise, exercise.cases(seed)))
    if to_run:
        observed = _run_harness(server, notebook, to_run, sources, setup_imports(nb), timeout_per_exercise)
        for exercise, cases in to_run:
            _judge(result, exercise, cases, observed.get(exercise.grade_id) or {"error": "the check returned nothing"})
    result.seconds = time.monotonic() - started
    return result


def _fail_all(result: NotebookVerdicts, exercise: Exercise, message: str) -> None:
    for tid in exercise.test_ids:
        result.verdicts[tid] = message


def _run_harness(server: KernelServer, notebook: str, to_run, sources: dict[str, str], imports: str,
                 timeout: float) -> dict:
    job = server.new_job(f"verify-{notebook}"[:40])
    try:
        request = {
            "exercises": [{"grade_id": ex.grade_id, "source": sources[ex.grade_id], "preamble": imports or ex.preamble,
                           "cases": [dataclasses.asdict(c) for c in cases]} for ex, cases in to_run],
            "result_path": f"{job.inside}/result.json",
        }
        path = job.host / "request.json"
        path.write_text(json.dumps(request))
        if server.sandboxed:
            os.chown(path, server.uid, server.uid)
        path.chmod(0o600)
        pid = server.call(cmd="harness", dir=job.inside, request=f"{job.inside}/request.json")["pid"]
        limit = timeout * len(to_run) + 5
        waited = server.call(cmd="wait", pid=pid, timeout=limit, reply_timeout=limit + 10)
        if not waited["exited"]:
            server.call(cmd="signal", pid=pid, signal=int(signal.SIGKILL), group=True)
            return {ex.grade_id: {"error": "the check did not finish in time"} for ex, _ in to_run}
        out = job.host / "result.json"
        if not out.exists() or out.stat().st_size > RESULT_LIMIT_BYTES:
            return {ex.grade_id: {"error": "the check produced no usable result"} for ex, _ in to_run}
        return json.loads(out.read_text())
    finally:
        server.finish_job(job)


def _judge(result: NotebookVerdicts, exercise: Exercise, cases, outcome: dict) -> None:
    if outcome.get("error"):
        _fail_all(result, exercise, outcome["error"])
        return
    fused = outcome.get("fused_calls") or []
    if fused:
        _fail_all(result, exercise, f"{exercise.name} calls {', '.join(fused)}: {exercise.forbidden_reason or 'not allowed here.'}")
        return
    observed = outcome.get("observed") or []
    for tid in exercise.test_ids:
        result.verdicts.setdefault(tid, None)
    for index, case in enumerate(cases):
        if result.verdicts.get(case.test_id):
            continue
        if index >= len(observed) or not isinstance(observed[index], dict):
            result.verdicts[case.test_id] = f"{exercise.name}: the check stopped before case {case.label!r}"
            continue
        item = observed[index]
        if not item.get("ok"):
            result.verdicts[case.test_id] = str(item.get("error", "failed"))[:2000]
            continue
        try:
            result.verdicts[case.test_id] = exercise.judge(case, item.get("value"))
        except Exception as exc:  # noqa: BLE001 - malformed data from the submission
            result.verdicts[case.test_id] = f"{exercise.name} returned data the check could not read ({type(exc).__name__})"
