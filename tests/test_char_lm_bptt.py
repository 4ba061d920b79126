"""bptt.ipynb (char_lm): rnn_bptt and clip_grad_norm, their checks, and the autograd traps.

Fast tests run the catalogue through the hidden and the visible checks in-process, and the verifier's harness in a
subprocess (its traps replace torch's functions for good: never in the test process). The ``slow`` tests drive the
real verifier with a real sandboxed kernel server: answers that reach autograd by routes the static check cannot
see must score 0 for both rnn_bptt test cells, and torch's clipping 0 for clip_grad_norm.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import torch

from conftest import REPO, source_nb, with_solution
from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES, hidden_check
from grading.instructor.verifier import setup_imports
from grading.student import char_lm_bptt as visible
from grading.student.checks import CheckFailed

NOTEBOOK = ("char_lm", "bptt")
BPTT_TESTS = {"test_rnn_bptt_shapes", "test_rnn_bptt_values"}

# rnn_bptt answers that use autograd with every telling name spelt so that the static check cannot see it.
_FORWARD = '''
import torch

NAMES = ["inputs", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"]
{prelude}

def tanh(a):
    return {tanh}


def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):
    leaves = [t.detach().clone() for t in (inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh)]
    for leaf in leaves:
        getattr(leaf, "requires_" + "gr" + "ad_")()
    x, h, w_ih, w_hh, b_ih, b_hh = leaves
    total = 0
    for t in range(len(x)):
        h = tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
        total = total + (h * grad_outputs[t]).sum()
{call}
    return dict(zip(NAMES, found))
'''
TANH = "torch.tanh(a)"
EXP_TANH = "(1 - torch.exp(-2 * a)) / (1 + torch.exp(-2 * a))"
TENSOR_BACKWARD = ('    getattr(total, "back" + "ward")()\n'
                   '    found = [getattr(leaf, "gr" + "ad") for leaf in leaves]')
AUTOGRAD_GRAD = '    found = getattr(getattr(torch, "auto" + "gr" + "ad"), "gr" + "ad")(total, leaves)'
FRESH_ENGINE = ('    engine = getattr(torch._C, "_Imperative" + "Engine")()\n'
                '    found = getattr(engine, "run_" + "back" + "ward")((total,), (torch.ones_like(total),), False, '
                'False, tuple(leaves), False, False)')
# Calls each node of the graph by hand: no engine, no Python entry point of autograd.
GRAPH_WALK = """
def _walk(total, leaves):
    grads = {}
    stack = [(getattr(total, "gr" + "ad_fn"), torch.ones_like(total))]
    while stack:
        node, g = stack.pop()
        if node is None:
            continue
        if hasattr(node, "variable"):
            key = id(node.variable)
            grads[key] = grads.get(key, 0) + g
            continue
        outs = node(g)
        outs = outs if isinstance(outs, tuple) else (outs,)
        for (child, _), out in zip(getattr(node, "next_" + "functions"), outs):
            if out is not None:
                stack.append((child, out))
    return [grads.get(id(leaf), torch.zeros_like(leaf)) for leaf in leaves]
"""
FUNC_VJP = '''
import torch

def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):
    def forward(x, h, w_ih, w_hh, b_ih, b_hh):
        hs = []
        for t in range(len(x)):
            h = torch.tanh(x[t] @ w_ih.T + b_ih + h @ w_hh.T + b_hh)
            hs.append(h)
        return torch.stack(hs)
    transform = getattr(getattr(torch, "fu" + "nc"), "v" + "jp")
    _, pull = transform(forward, inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh)
    return dict(zip(["inputs", "h0", "weight_ih", "weight_hh", "bias_ih", "bias_hh"], pull(grad_outputs)))
'''
ROUTES = {
    "tensor_backward": _FORWARD.format(prelude="", tanh=TANH, call=TENSOR_BACKWARD),
    "autograd_grad": _FORWARD.format(prelude="", tanh=TANH, call=AUTOGRAD_GRAD),
    "func_vjp": FUNC_VJP,
    # tanh rebuilt from exp: no tanh_backward runs, only the Python entry points are left to refuse.
    "exp_tanh_backward": _FORWARD.format(prelude="", tanh=EXP_TANH, call=TENSOR_BACKWARD),
    "exp_tanh_autograd_grad": _FORWARD.format(prelude="", tanh=EXP_TANH, call=AUTOGRAD_GRAD),
    # A reference taken at module level, before the function runs (the traps are installed before the cell).
    "module_level_alias": _FORWARD.format(prelude='_saved = getattr(getattr(torch, "auto" + "gr" + "ad"), "gr" + "ad")',
                                          tanh=EXP_TANH, call="    found = _saved(total, leaves)"),
    # A fresh engine object: the Python traps are bypassed if the class is reached, and tanh_backward still runs.
    "fresh_engine": _FORWARD.format(prelude="", tanh=TANH, call=FRESH_ENGINE),
    # The graph's nodes called one by one: only the dispatcher trap of tanh_backward is left.
    "graph_walk": _FORWARD.format(prelude=GRAPH_WALK, tanh=TANH, call="    found = _walk(total, leaves)"),
    # The refusal caught, then autograd tried once more by another route.
    "caught_refusal": _FORWARD.format(prelude="", tanh=TANH, call=(
        "    try:\n" + TENSOR_BACKWARD.replace("    ", "        ") + "\n    except Exception:\n"
        "    " + AUTOGRAD_GRAD)),
}
CLIP_ROUTES = {
    "torch_clip_getattr": ('import torch\n\ndef clip_grad_norm(parameters, max_norm):\n'
                           '    fn = getattr(torch.nn.utils, "clip_grad_" + "norm_")\n'
                           '    return float(fn(list(parameters), max_norm, foreach=False))\n'),
    "foreach_norm": ('import torch\n\ndef clip_grad_norm(parameters, max_norm):\n'
                     '    grads = [p.grad for p in parameters if p.grad is not None]\n'
                     '    norms = getattr(torch, "_foreach_" + "norm")(grads)\n'
                     '    total = torch.stack(norms).norm().item()\n'
                     '    coef = max_norm / (total + 1e-6)\n'
                     '    if coef < 1:\n'
                     '        for g in grads:\n'
                     '            g.mul_(coef)\n'
                     '    return total\n'),
}


def _namespace(source: str) -> dict:
    namespace: dict = {}
    exec(setup_imports(source_nb(*NOTEBOOK)), namespace)
    exec(source, namespace)
    return namespace


def _hidden(grade_id: str, source: str) -> dict[str, str | None]:
    exercise = EXERCISES[grade_id]
    obj = _namespace(source)[exercise.name]
    messages = {}
    for test_id in exercise.test_ids:
        try:
            hidden_check(test_id, obj)
            messages[test_id] = None
        except AssertionError as exc:
            messages[test_id] = str(exc)
    return messages


# ----------------------------------------------------------------------------- in-process (fast)


def test_the_notebook_s_own_solutions_pass_the_hidden_checks():
    nb = source_nb(*NOTEBOOK)
    for grade_id in ("rnn_bptt", "clip_grad_norm"):
        source = next(c.source for c in nb.cells if c.metadata.get("nbgrader", {}).get("grade_id") == grade_id)
        assert all(m is None for m in _hidden(grade_id, source).values()), grade_id


VISIBLE = {"test_rnn_bptt_shapes": visible.check_rnn_bptt_shapes, "test_rnn_bptt_values": visible.check_rnn_bptt_values,
           "test_clip_grad_norm": visible.check_clip_grad_norm}


@pytest.mark.parametrize("answer", answers_for("rnn_bptt") + answers_for("clip_grad_norm"),
                         ids=lambda a: f"{a.exercise}-{a.key}")
def test_validate_names_the_fault_the_hidden_test_names(answer, capsys):
    """The visible checks (Validate) fail exactly where the hidden ones do, with the catalogue's diagnosis."""
    obj = _namespace(answer.source)[EXERCISES[answer.exercise].name]
    for test_id in EXERCISES[answer.exercise].test_ids:
        try:
            VISIBLE[test_id](obj)
            message = None
        except CheckFailed as exc:
            message = str(exc)
        if answer.correct or test_id not in answer.fails:
            assert message is None, (answer.key, test_id, message)
        else:
            assert message and answer.message in message, (answer.key, test_id, message)


def test_the_known_bugs_are_told_apart():
    """Each known bug's gradients differ from the right ones and from every other bug's (seq_len >= 2)."""
    args = visible.bptt_inputs(torch.Generator().manual_seed(3), 4, 2, 3, 5)
    results = {None: visible.bptt_reference(args)}
    results.update({bug: visible.bptt_reference(args, bug) for bug in visible.KNOWN_BUGS})
    for a in results:
        for b in results:
            if a != b:
                assert visible._within(results[a], results[b], 1e-6), (a, b)


def test_one_step_has_no_recurrent_gradient_to_miss():
    args = visible.bptt_inputs(torch.Generator().manual_seed(3), 1, 2, 3, 5)
    assert not visible._within(visible.bptt_reference(args, "recurrent_missing"), visible.bptt_reference(args), 1e-12)


@pytest.mark.parametrize("source, flagged", [
    ("def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):\n"
     "    grad = grad_outputs[0]\n    return grad", False),
    ("def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):\n"
     "    def backward(d):\n        return d\n    return backward(grad_outputs)", False),
    ("from torch.autograd import grad as g\n\ndef rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, "
     "grad_outputs):\n    from torch.autograd import grad as g\n    return g", True),
    ("def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):\n"
     "    import torch.func\n    return torch.func.vjp", True),
    ("def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):\n"
     "    return inputs.grad", True),
    ("def rnn_bptt(inputs, h0, weight_ih, weight_hh, bias_ih, bias_hh, grad_outputs):\n"
     "    with torch.enable_grad():\n        return inputs", True),
])
def test_the_static_check_reads_names_not_local_variables(source, flagged):
    """A local variable or helper named grad / backward is the student's own; torch's autograd names are not."""
    assert bool(EXERCISES["rnn_bptt"].scratch_violation_in_source(source)) == flagged


@pytest.mark.parametrize("route", sorted(ROUTES))
def test_in_the_kernel_autograd_earns_nothing(route):
    """The in-kernel check (feedback) refuses tanh_backward; routes around tanh are left to the verifier."""
    messages = _hidden("rnn_bptt", ROUTES[route])
    if route.startswith(("exp_tanh", "module_level")):
        return  # tanh from exp: only the verifier's Python traps refuse it (below)
    for test_id in BPTT_TESTS:
        assert messages[test_id] and "by hand" in messages[test_id], (route, test_id, messages[test_id])


# ----------------------------------------------------------------------------- the harness, in a subprocess

_HARNESS = r'''
import json, os, sys
from grading.instructor.runtime import harness
specs = json.loads(sys.stdin.read())
out = []
for spec in specs:
    read_fd, write_fd = os.pipe()
    pid = os.fork()
    if pid == 0:
        os.close(read_fd)
        os.write(write_fd, json.dumps(harness.run_exercise(spec)).encode())
        os._exit(0)
    os.close(write_fd)
    chunks = []
    while True:
        data = os.read(read_fd, 1 << 20)
        if not data:
            break
        chunks.append(data)
    os.waitpid(pid, 0)
    out.append(json.loads(b"".join(chunks)))
print(json.dumps(out))
'''


def _harness(grade_id: str, sources: list[str]) -> list[dict]:
    exercise = EXERCISES[grade_id]
    cases = [c.__dict__ for c in exercise.cases(1234)]
    imports = setup_imports(source_nb(*NOTEBOOK))
    specs = [{"grade_id": grade_id, "source": s, "preamble": imports, "cases": cases} for s in sources]
    proc = subprocess.run([sys.executable, "-c", _HARNESS], input=json.dumps(specs), capture_output=True, text=True,
                          cwd=REPO, timeout=120, env={"OMP_NUM_THREADS": "1", "PATH": "/usr/bin:/bin"})
    assert proc.returncode == 0, proc.stderr[-3000:]
    return json.loads(proc.stdout)


def test_the_harness_refuses_every_autograd_route_and_passes_an_honest_answer():
    honest = answers_for("rnn_bptt", correct=True)
    outcomes = _harness("rnn_bptt", [a.source for a in honest] + [ROUTES[r] for r in sorted(ROUTES)])
    exercise = EXERCISES["rnn_bptt"]
    cases = exercise.cases(1234)
    for answer, outcome in zip(honest, outcomes, strict=False):
        assert outcome["fused_calls"] == [], (answer.key, outcome)
        for case, item in zip(cases, outcome["observed"], strict=True):
            assert item["ok"] and exercise.judge(case, item["value"]) is None, (answer.key, case.label)
    for route, outcome in zip(sorted(ROUTES), outcomes[len(honest):], strict=True):
        assert _refused(outcome, exercise, cases), (route, outcome)


def test_the_harness_refuses_torch_s_clipping():
    honest = answers_for("clip_grad_norm", correct=True)[0]
    outcomes = _harness("clip_grad_norm", [honest.source] + [CLIP_ROUTES[r] for r in sorted(CLIP_ROUTES)])
    assert outcomes[0]["fused_calls"] == [] and all(o["ok"] for o in outcomes[0]["observed"]), outcomes[0]
    exercise = EXERCISES["clip_grad_norm"]
    for route, outcome in zip(sorted(CLIP_ROUTES), outcomes[1:], strict=True):
        assert _refused(outcome, exercise, exercise.cases(1234)), (route, outcome)


def _refused(outcome: dict, exercise, cases) -> bool:
    """The harness's traps recorded a call, or the probe's own refusal did on every case (the judge says so)."""
    if outcome.get("fused_calls"):
        return True
    verdicts = [exercise.judge(c, item["value"]) if item.get("ok") else item.get("error")
                for c, item in zip(cases, outcome["observed"], strict=True)]
    return all(v and " calls " in v and exercise.forbidden_reason in v for v in verdicts)


def test_what_remains_possible():
    """The limit the README states: tanh rebuilt from exp, and the graph's nodes called one by one with every name
    spelt out of the static check's sight. No trap sees it (no tanh_backward runs, no Python entry point is called);
    with torch.tanh in the graph the same walk is refused (``graph_walk`` above)."""
    source = _FORWARD.format(prelude=GRAPH_WALK, tanh=EXP_TANH, call="    found = _walk(total, leaves)")
    outcome = _harness("rnn_bptt", [source])[0]
    exercise = EXERCISES["rnn_bptt"]
    assert not exercise.scratch_violation_in_source(source)
    assert not _refused(outcome, exercise, exercise.cases(1234))


# ----------------------------------------------------------------------------- the real verifier (slow)


# The sandboxed kernel server: the `server` fixture of conftest.py.


def _verdicts(server, grade_id: str, source: str) -> dict:
    from grading.instructor.verifier import verify_notebook

    nb = with_solution(source_nb(*NOTEBOOK), grade_id, source)
    verdicts = verify_notebook(server, *NOTEBOOK, nb, seed=1234).verdicts
    tests = set(EXERCISES[grade_id].test_ids)
    return {k: v for k, v in verdicts.items() if k in tests}


@pytest.mark.slow
def test_verifier_passes_the_honest_answers(server):
    for grade_id in ("rnn_bptt", "clip_grad_norm"):
        for answer in answers_for(grade_id, correct=True):
            verdicts = _verdicts(server, grade_id, answer.source)
            assert verdicts and all(v is None for v in verdicts.values()), (answer.key, verdicts)


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(ROUTES))
def test_verifier_gives_autograd_nothing(server, route):
    verdicts = _verdicts(server, "rnn_bptt", ROUTES[route])
    assert set(verdicts) == BPTT_TESTS
    for test_id, verdict in verdicts.items():
        assert verdict and "by hand" in verdict and "calls" in verdict, (route, test_id, verdict)


@pytest.mark.slow
@pytest.mark.parametrize("route", sorted(CLIP_ROUTES))
def test_verifier_gives_torch_s_clipping_nothing(server, route):
    verdict = _verdicts(server, "clip_grad_norm", CLIP_ROUTES[route])["test_clip_grad_norm"]
    assert verdict and "earn no points" in verdict, (route, verdict)
