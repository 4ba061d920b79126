"""Unit tests of the grading package: checks, normalisation, tamper scan, submissions, verifier pieces."""

import json

import nbformat
import pytest
import torch

from conftest import REPO, source_nb
from grading.instructor import normalize, submissions, tamper, verifier
from grading.instructor.exercises.base import pack, unpack
from grading.instructor.sandbox import stage_package
from grading.student import checks


def test_check_shape_names_the_dimension_at_fault():
    with pytest.raises(checks.CheckFailed, match=r"dimension 0 \(num_layers\) is 3, should be 2"):
        checks.check_shape(torch.zeros(3, 2, 4), (2, 2, 4), "h_n", ("num_layers", "batch", "hidden_size"))
    with pytest.raises(checks.CheckFailed, match="has 2 dimensions"):
        checks.check_shape(torch.zeros(2, 4), (1, 2, 4), "h_n", ("num_layers", "batch", "hidden_size"))
    checks.check_shape(torch.zeros(2, 4), (2, 4), "h")


def test_check_close_reports_worst_index_and_tolerance():
    expected = torch.zeros(2, 3)
    actual = expected.clone()
    actual[1, 2] = 0.5
    with pytest.raises(checks.CheckFailed, match=r"max difference 0.5 at index \(1, 2\).*below 1e-06"):
        checks.check_close(actual, expected, "h'")
    checks.check_close(expected + 1e-8, expected, "h'")


def test_type_and_dtype_checks_and_stub_message():
    with pytest.raises(checks.CheckFailed, match="should be a Tensor, got list"):
        checks.check_type([1], torch.Tensor, "out")
    with pytest.raises(checks.CheckFailed, match="dtype torch.float64, expected torch.float32"):
        checks.check_dtype(torch.zeros(1, dtype=torch.float64), torch.float32, "out")

    def stub(*_):
        raise NotImplementedError()

    with pytest.raises(checks.CheckFailed, match="not implemented yet"):
        checks.call(stub, 1)


def test_compare_table_verdicts():
    a = torch.ones(3, dtype=torch.float64)
    table = checks.compare_table({"i": (a, a), "f": (a + 1e-8, a), "g": (a * 2, a),
                                  "o": (torch.ones(2, dtype=torch.float64), a)})
    lines = dict(line.split(None, 1) for line in table.splitlines())
    assert lines["i"].startswith("exact") and lines["f"].startswith("close")
    assert lines["g"].startswith("WRONG") and "shape" in lines["o"]


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64, torch.int64])
def test_pack_round_trip_is_exact(dtype):
    t = (torch.randn(3, 4, dtype=torch.float64) * 1e3).to(dtype)
    back = unpack(json.loads(json.dumps(pack(t))))
    assert back.dtype == dtype and torch.equal(back, t)


def release_of(nb):
    release = nbformat.from_dict(json.loads(nbformat.writes(nb)))
    return release


def test_normalize_restores_deleted_and_edited_cells_and_keeps_extras():
    release = source_nb("rnn_basics", "rnn_cell")
    sub = release_of(release)
    test_cells = [c for c in sub.cells if c.metadata.get("nbgrader", {}).get("grade")]
    sub.cells.remove(test_cells[0])
    locked = next(c for c in sub.cells if c.cell_type == "code" and c.metadata["nbgrader"].get("locked")
                  and not c.metadata["nbgrader"].get("grade"))
    locked.source = "print('edited')"
    sub.cells.insert(3, nbformat.v4.new_code_cell("helper = 1"))
    out, anomalies = normalize.normalize(sub, release)
    assert [c.source for c in out.cells if c.metadata.get("nbgrader")] == [c.source for c in release.cells]
    assert any(c.source == "helper = 1" for c in out.cells)
    assert any("was deleted: restored" in a for a in anomalies)
    assert any("was edited: restored" in a for a in anomalies)


def test_normalize_merges_split_solution_cells():
    release = source_nb("rnn_basics", "rnn_cell")
    sub = release_of(release)
    index = next(i for i, c in enumerate(sub.cells)
                 if c.metadata.get("nbgrader", {}).get("grade_id") == "rnn_cell_step")
    first = nbformat.from_dict(json.loads(json.dumps(sub.cells[index])))
    first.source = "import math"
    sub.cells.insert(index, first)
    out, anomalies = normalize.normalize(sub, release)
    merged = next(c for c in out.cells if c.metadata.get("nbgrader", {}).get("grade_id") == "rnn_cell_step")
    assert merged.source.startswith("import math\n") and "def rnn_cell_step" in merged.source
    assert any("merged" in a for a in anomalies)


def test_read_notebook_reasons(tmp_path):
    bad = tmp_path / "bad.ipynb"
    bad.write_text("{not json")
    assert "not valid JSON" in submissions.read_notebook(bad)[1]
    bad.write_text(json.dumps({"nbformat": 5, "cells": []}))
    assert "format version 5" in submissions.read_notebook(bad)[1]
    v3 = tmp_path / "v3.ipynb"
    v3.write_text(json.dumps({"nbformat": 3, "nbformat_minor": 0, "metadata": {}, "worksheets": [
        {"cells": [{"cell_type": "code", "input": "x = 1", "language": "python", "outputs": [], "metadata": {}}]}]}))
    nb, problem = submissions.read_notebook(v3)
    assert problem is None and nb.nbformat == 4 and nb.cells[0].source == "x = 1"


def test_tamper_scan_names_each_trick():
    assert tamper.scan("x = 1\ndef f(a):\n    return a + 1\n") == []
    assert "registers an IPython input transformer" in tamper.scan(
        'get_ipython().input_transformers_cleanup.append(lambda lines: ["pass"])')[0]
    assert tamper.scan("import torch as t\nt.allclose = lambda *a: True") == ["patches t.allclose"]
    assert tamper.scan("check_x = None", {"check_x"}) == ["redefines check_x, which the tests use"]
    assert "custom exception handler" in tamper.scan("get_ipython().set_custom_exc((Exception,), f)")[0]


def test_submission_seed_is_stable_and_secret_dependent():
    def seed(secret, student, notebook="n", code=""):
        return verifier.submission_seed(verifier.submission_key(secret, "a", student), notebook, code)

    a = seed(b"k1", "s")
    assert a == seed(b"k1", "s")
    assert a != seed(b"k2", "s")
    assert a != seed(b"k1", "t")
    assert a != seed(b"k1", "s", "m") and a != seed(b"k1", "s", code="x = 1")
    # the key a worker gets is one submission's: it is not the secret, and another student's differs
    assert verifier.submission_key(b"k1", "a", "s") not in (b"k1", verifier.submission_key(b"k1", "a", "t"))


def test_setup_imports_come_from_read_only_cells():
    imports = verifier.setup_imports(source_nb("rnn_basics", "rnn_cell"))
    assert "import torch" in imports and "def " not in imports


def test_staged_package_holds_no_instructor_pipeline_or_catalogue(tmp_path):
    staged = stage_package(tmp_path / "pkg") / "grading"
    assert (staged / "student" / "checks.py").exists()
    assert (staged / "instructor" / "exercises" / "base.py").exists()
    assert (staged / "instructor" / "runtime" / "zygote.py").exists()
    for forbidden in ("instructor/catalogue", "instructor/autograde.py", "instructor/cli.py", "instructor/verifier.py",
                      "instructor/calibration"):
        assert not (staged / forbidden).exists(), forbidden
    assert not list(staged.rglob("*.ipynb"))
    assert REPO.exists()


def test_a_result_lost_with_the_scheduler_stops_the_run_as_lost_not_as_a_crash():
    """The scheduler dies between a job's completion and the fetch of its result: the run stops as ClusterLost
    (exit 6, `--resume`), and a result that does not come within the deadline is lost the same way."""
    from distributed.comm.core import CommClosedError

    from grading.instructor.cluster import ClusterLost, _outcome

    class Future:
        def __init__(self, status, error):
            self.status, self.error = status, error

        def result(self, timeout=None):
            assert timeout is not None
            raise self.error

        def exception(self, timeout=None):
            assert timeout is not None
            return self.error

    for error in (CommClosedError("in <TCP (closed) ConnectionPool.gather>: Stream is closed"), TimeoutError()):
        with pytest.raises(ClusterLost, match="stopped answering"):
            _outcome(Future("finished", error), None, "tcp://127.0.0.1:1", KeyError)
    with pytest.raises(ClusterLost):
        _outcome(Future("cancelled", None), None, "tcp://127.0.0.1:1", KeyError)
    failure = _outcome(Future("error", ValueError("boom")), "job", "tcp://127.0.0.1:1", KeyError)
    assert failure.reason == "ValueError: boom"


def test_a_job_gradebook_is_created_in_process_exactly_as_nbgrader_creates_one(tmp_path):
    """nbgrader creates a gradebook by running `alembic heads` in a new Python process (about a second per grading
    run); the grader builds the same schema and revision in process."""
    import sqlite3

    from nbgrader.api import Gradebook

    from grading.instructor.job_gradebook import new_sqlite_gradebook

    Gradebook(f"sqlite:///{tmp_path / 'nbgrader.db'}", "course").close()
    Gradebook(new_sqlite_gradebook(tmp_path / "ours.db"), "course").close()

    def schema(path):
        with sqlite3.connect(path) as db:
            return (sorted(db.execute("SELECT type, name, sql FROM sqlite_master").fetchall()),
                    db.execute("SELECT version_num FROM alembic_version").fetchall())

    assert schema(tmp_path / "ours.db") == schema(tmp_path / "nbgrader.db")
    assert len(schema(tmp_path / "ours.db")[1]) == 1
