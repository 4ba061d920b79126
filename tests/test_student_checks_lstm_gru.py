"""The shipped diagnosis of LSTM and GRU cells (``grading.student.cell_diagnosis``) and the visible checks on it.

The hidden tests of ``lstm_gru`` judge with the same diagnosis (``tests/test_catalogue.py``), and every wrong
answer of the catalogue fails Validate with the hidden test's diagnosis (``tests/test_visible_checks.py``).
Here: the diagnosis names every known bug and passes torch's own cells, no known bug is the correct cell,
Validate passes every correct answer and fails the unanswered stub, and the visible checks are deterministic
with sizes that differ in every dimension.
"""

import ast
import contextlib
import io
import re
from pathlib import Path

import pytest
import torch
import torch.nn as nn

from conftest import source_nb
from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES
from grading.instructor.verifier import setup_imports
from grading.student import cell_diagnosis as D
from grading.student import lstm_gru as L

KINDS = ("lstm", "gru")
GRADE_ID = {"lstm": "lstm_cell", "gru": "gru_cell"}
HIDDEN_MARK = "### BEGIN HIDDEN TESTS"


def test_torch_linear_is_the_linear_map():
    gen = torch.Generator().manual_seed(0)
    v, weight, bias = (torch.randn(*s, generator=gen, dtype=torch.float64) for s in ((5, 3), (8, 3), (8,)))
    bias[:2] = torch.tensor([80.0, -80.0], dtype=torch.float64)  # the size of a forced gate's pre-activation
    want = v @ weight.T + bias
    assert D.max_diff(D.torch_linear(v, weight, bias), want) < 1e-12 * float(want.abs().max())
    with pytest.raises(RuntimeError):
        D.torch_linear(torch.zeros(5, 4, dtype=torch.float64), weight, bias)


def _bug_cell(kind, bug):
    """A cell with the contract's parameters whose forward is the known bug ``bug``."""
    k = len(D.GATES[kind])

    class BugCell(nn.Module):
        def __init__(self, input_size, hidden_size):
            super().__init__()
            self.weight_ih = nn.Parameter(torch.zeros(k * hidden_size, input_size))
            self.weight_hh = nn.Parameter(torch.zeros(k * hidden_size, hidden_size))
            self.bias_ih = nn.Parameter(torch.zeros(k * hidden_size))
            self.bias_hh = nn.Parameter(torch.zeros(k * hidden_size))

        def forward(self, x, state):
            h, c = state if kind == "lstm" else (state, state)
            out = bug(x, h, c, {n: getattr(self, n) for n in D.PARAMS})
            return out if kind == "lstm" else out[0]

    return BugCell


def _probes(kind, sizes, seed=7):
    return D.diagnosis_probes(kind, torch.Generator().manual_seed(seed), *sizes)


def _diagnose(cls, kind, probes):
    return D.diagnose(kind, probes, [D.run_cell(cls, kind, p["params"], p["x"], p["h"], p["c"]) for p in probes])


@pytest.mark.parametrize("sizes", [(4, 3), L.DIAGNOSIS_SIZES], ids=["hidden_sizes", "visible_sizes"])
@pytest.mark.parametrize("kind", KINDS)
def test_every_known_bug_is_named(kind, sizes):
    probes = _probes(kind, sizes)
    wrong = {key: got for key, message, bug in D.BUGS[kind]
             if (got := _diagnose(_bug_cell(kind, bug), kind, probes)) != D.verdict(kind, [message])}
    assert not wrong, wrong


@pytest.mark.parametrize("kind", KINDS)
def test_torchs_own_cell_passes_the_diagnosis(kind):
    assert _diagnose(D.TORCH_CELL[kind], kind, _probes(kind, L.DIAGNOSIS_SIZES)) is None


@pytest.mark.parametrize("kind", KINDS)
def test_no_known_bug_is_the_correct_cell(kind):
    """A 'bug' that computed torch's cell would give a correct answer a bug's name."""
    case = D.random_case(kind, torch.Generator().manual_seed(1), 3, 4, 4, torch.float64)
    want = D.reference(kind, **case)
    for key, _message, bug in D.BUGS[kind]:
        got = bug(case["x"], case["h"], case["c"], case["params"])
        diff = max(D.max_diff(g, w) for g, w in zip(got, want[:2], strict=True) if w is not None)
        assert diff > 1e-3, key


@pytest.mark.parametrize("module", [D, L], ids=lambda m: m.__name__)
def test_the_shipped_modules_multiply_no_weights_themselves(module):
    """Every term the known bugs start from is torch's cell's (torch_linear): the package holds no step of a cell."""
    tree = ast.parse(Path(module.__file__).read_text(encoding="utf-8"))
    assert not [n.lineno for n in ast.walk(tree) if isinstance(n, ast.BinOp) and isinstance(n.op, ast.MatMult)]
    called = {n.func.attr if isinstance(n.func, ast.Attribute) else getattr(n.func, "id", "")
              for n in ast.walk(tree) if isinstance(n, ast.Call)}
    assert not called & {"linear", "addmm", "matmul", "mm", "bmm", "einsum", "mv", "tensordot", "inner"}


# --------------------------------------------------------------------------- the visible checks

def _cells(kind):
    exercise = EXERCISES[GRADE_ID[kind]]
    nb = source_nb(exercise.assignment, exercise.notebook)
    return nb, exercise.test_ids


def _visible(nb, test_id):
    cell = next(c for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == test_id)
    return cell.source.split(HIDDEN_MARK)[0]


def _validate(kind, solution):
    """{test_id: (message or None, printed output)} of every visible check, run as a kernel would."""
    nb, test_ids = _cells(kind)
    namespace: dict = {}
    out = {}
    exec(setup_imports(nb), namespace)
    exec(solution, namespace)
    for test_id in test_ids:
        printed = io.StringIO()
        message = None
        with contextlib.redirect_stdout(printed), contextlib.redirect_stderr(printed):
            try:
                exec(_visible(nb, test_id), namespace)
            except AssertionError as exc:
                message = str(exc)
        out[test_id] = (message, printed.getvalue())
    return out


CORRECT = [a for kind in KINDS for a in answers_for(GRADE_ID[kind], correct=True)]


@pytest.mark.parametrize("answer", CORRECT, ids=lambda a: f"{a.exercise}-{a.key}")
def test_validate_passes_every_correct_answer(answer):
    kind = "lstm" if answer.exercise == "lstm_cell" else "gru"
    failed = {t: m for t, (m, _) in _validate(kind, answer.source).items() if m is not None}
    assert not failed, failed


def _stub(source):
    """The solution cell as the release shows it: each solution block replaced by ``raise NotImplementedError()``."""
    return re.sub(r"( *)### BEGIN SOLUTION\n.*?### END SOLUTION", r"\1raise NotImplementedError()", source,
                  flags=re.S)


@pytest.mark.parametrize("kind", KINDS)
def test_validate_fails_the_unanswered_stub(kind):
    nb, _ = _cells(kind)
    solution = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == GRADE_ID[kind])
    for test_id, (message, _) in _validate(kind, _stub(solution)).items():
        assert message and "not implemented yet" in message, (test_id, message)


@pytest.mark.parametrize("kind", KINDS)
def test_visible_checks_are_deterministic(kind):
    solution = answers_for(GRADE_ID[kind], correct=True)[0].source
    assert _validate(kind, solution) == _validate(kind, solution)


def test_visible_sizes_differ_in_every_dimension():
    """batch_size, input_size and hidden_size pairwise apart, none equal to a gate count or to k * hidden_size."""
    triples = [L.SHAPE_SIZES, L.GRADIENT_SIZES, *(case[:3] for case in L.VALUE_CASES),
               (1, L.EMBEDDING_SIZE, L.HIDDEN_SIZE)]
    for batch_size, input_size, hidden_size in triples:
        sizes = {batch_size, input_size, hidden_size}
        assert len(sizes) == 3 and not sizes & {3, 4}, (batch_size, input_size, hidden_size)
        assert not {3 * hidden_size, 4 * hidden_size} & {batch_size, input_size}
    batch_size, size = L.DIAGNOSIS_SIZES  # input_size == hidden_size on purpose: the shared weight must run
    assert batch_size != size and not {batch_size, size} & {3, 4}
