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
import time
from dataclasses import dataclass, field
from pathlib import Path

from nbformat import NotebookNode

from .exercises import EXERCISES, Exercise
from .messages import clean_text
from .sandbox import KernelServer

SECRET_FILE = ".grading_secret"
RESULT_LIMIT_BYTES = 8 * 2**20
MESSAGE_LIMIT = 300


def safe_message(value: object, limit: int = MESSAGE_LIMIT) -> str:
    """A verdict a student may read: bounded, valid UTF-8, no grader internals (see messages.py)."""
    return clean_text(value, limit)


@dataclass
class NotebookVerdicts:
    """What the verifier concluded for one notebook."""

    verdicts: dict[str, str | None] = field(default_factory=dict)  # test cell grade_id -> None | message
    exercise_of: dict[str, str] = field(default_factory=dict)  # test cell grade_id -> exercise grade_id
    seconds: float = 0.0
    start_seconds: float = 0.0  # of which: until the harness process was running (the rest is its work)


def course_secret(root: Path) -> bytes:
    """The course's verifier secret (created on first use, never readable by anyone but its owner)."""
    path = root / SECRET_FILE
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, 0o600)
    except FileExistsError:
        pass
    else:
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32))
    fd = os.open(path, os.O_RDONLY | os.O_NOFOLLOW)
    with os.fdopen(fd) as f:
        return f.read(1024).strip().encode()


def submission_key(secret: bytes, assignment: str, student: str) -> bytes:
    """The key of one submission's seeds, derived from the course's secret: a grading worker gets this key
    with the job, never the secret, and it derives nothing about any other student's inputs."""
    return hmac.new(secret, f"submission/{assignment}/{student}".encode("utf-8", "surrogatepass"),
                    hashlib.sha256).digest()


def submission_seed(key: bytes, notebook: str, content: str = "") -> int:
    """Deterministic per submission (regrading gives the same score), unknowable without the key.

    ``content`` is the code being checked: inputs a student learnt for one version of their
    code are of no use for another version (hard-coding the answers changes the code).
    """
    digest = hashlib.sha256(content.encode("utf-8", "surrogatepass")).hexdigest()
    message = f"{notebook}/{digest}".encode("utf-8", "surrogatepass")
    return int.from_bytes(hmac.new(key, message, hashlib.sha256).digest()[:4], "big") & 0x7FFFFFFF


def checked_code(nb: NotebookNode) -> str:
    """The solution cells the verifier runs, as one string (what the seed depends on)."""
    return "\n".join(f"{gid}\n{src}" for gid, src in sorted(solution_sources(nb).items()))


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


def verify_notebook(server: KernelServer, assignment: str, notebook: str, nb: NotebookNode,
                    seed: int) -> NotebookVerdicts:
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
        observed = _run_harness(server, to_run, sources, setup_imports(nb), server.settings.exercise_timeout + 5,
                                result)
        for exercise, cases in to_run:
            _judge(result, exercise, cases, observed.get(exercise.grade_id) or {"error": "the check returned nothing"})
    result.seconds = time.monotonic() - started
    return result


def _fail_all(result: NotebookVerdicts, exercise: Exercise, message: str) -> None:
    for tid in exercise.test_ids:
        result.verdicts[tid] = message


def _run_harness(server: KernelServer, to_run, sources: dict[str, str], imports: str, timeout: float,
                 timing: NotebookVerdicts | None = None) -> dict:
    """Run the solution cells under the harness; its answer comes back through a pipe the server holds."""
    started = time.monotonic()
    job = server.new_job()
    try:
        request = {
            "exercises": [{"grade_id": ex.grade_id, "source": sources[ex.grade_id], "preamble": imports or ex.preamble,
                           "cases": [dataclasses.asdict(c) for c in cases]} for ex, cases in to_run],
        }
        pid = server.call(cmd="harness", dir=job.inside, request=request)["pid"]
        if timing is not None:
            timing.start_seconds = time.monotonic() - started
        limit = timeout * len(to_run) + 5
        reply = server.call(cmd="collect", pid=pid, timeout=limit, limit=RESULT_LIMIT_BYTES, reply_timeout=limit + 15)
        problem = reply.get("problem") if isinstance(reply, dict) else "no answer"
        if problem == "timeout":
            return {ex.grade_id: {"error": "the check did not finish in time"} for ex, _ in to_run}
        data = reply.get("data") if not problem else None
        parsed = bounded_json(data) if isinstance(data, str) else None
        if not isinstance(parsed, dict):
            return {ex.grade_id: {"error": "the check produced no usable result"} for ex, _ in to_run}
        return parsed
    finally:
        server.finish_job(job)


def bounded_json(text: str, max_bytes: int = RESULT_LIMIT_BYTES, max_depth: int = 64) -> object:
    """json.loads for hostile text: None when it is too large, too deep or not JSON."""
    if len(text) > max_bytes:
        return None
    depth = deepest = 0
    in_string = escaped = False
    for char in text:
        if in_string:
            if escaped:
                escaped = False
            elif char == "\\":
                escaped = True
            elif char == '"':
                in_string = False
        elif char == '"':
            in_string = True
        elif char in "[{":
            depth += 1
            deepest = max(deepest, depth)
            if deepest > max_depth:
                return None
        elif char in "]}":
            depth -= 1
    try:
        return json.loads(text)
    except (ValueError, RecursionError):
        return None


def _judge(result: NotebookVerdicts, exercise: Exercise, cases, outcome) -> None:
    """Verdicts for one exercise from what its harness returned (hostile data: every field checked)."""
    if not isinstance(outcome, dict):
        outcome = {"error": "the check produced no usable result"}
    if outcome.get("error"):
        _fail_all(result, exercise, safe_message(outcome["error"]))
        return
    fused = outcome.get("fused_calls") or []
    if not isinstance(fused, list):
        fused = ["something the check could not read"]
    if fused:
        names = ", ".join(safe_message(f, 80) for f in fused[:5])
        _fail_all(result, exercise,
                  f"{exercise.name} calls {names}: {exercise.forbidden_reason or 'not allowed here.'}")
        return
    observed = outcome.get("observed") or []
    if not isinstance(observed, list):
        observed = []
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
            result.verdicts[case.test_id] = safe_message(item.get("error", "failed"))
            continue
        try:
            verdict = exercise.judge(case, item.get("value"))
        except Exception as exc:  # noqa: BLE001 - malformed data from the submission
            verdict = f"{exercise.name} returned data the check could not read ({type(exc).__name__})"
        result.verdicts[case.test_id] = None if verdict is None else safe_message(verdict, 1000)
