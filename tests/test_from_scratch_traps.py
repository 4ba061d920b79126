"""From scratch: torch's fused cells, and F.one_hot for one_hot, are out of a solution cell's reach in the verifier.

Each answer below computes the LSTM (or the one-hot encoding) through torch's genuine operator by a
route that Python-level wrappers cannot close (the trap's closure, a saved reference, the
dispatcher's own handles, destroying the trap's registration through ``gc``). They are run through
the real verifier in the real sandbox; every one must fail every test cell of its exercise with the
from-scratch message, while an honest answer passes.
"""

import pytest

from conftest import source_nb, with_solution
from grading.instructor.catalogue import answers_for
from grading.instructor.tamper import scan
from grading.instructor.verifier import verify_notebook

pytestmark = pytest.mark.slow  # runs nbgrader, kernels or the sandbox end to end

CLASS = """
import torch
import torch.nn as nn

{prelude}

class LSTMCellScratch(nn.Module):
    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size))
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size))
        self.bias_ih = nn.Parameter(torch.randn(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.randn(4 * hidden_size))

    def forward(self, x, state):
        h, c = {call}(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)
        return h, c
"""
# The fused op's name is spelt so that the static scan of names cannot see it: what is tested is the runtime trap.
NAME = "getattr(torch, 'lstm_' + 'cell')"
BYPASSES = {
    "trap_closure": (f"_genuine = next(c.cell_contents for c in (getattr({NAME}, '__closure__', None) or ()) "
                     "if callable(c.cell_contents))", "_genuine"),
    "saved_reference": (f"_saved = {NAME}", "_saved"),
    "dispatcher_handle": ("_op = getattr(torch.ops.aten, 'lstm_' + 'cell').default", "_op"),
    "jit_operation": ("_op = torch._C._jit_get_operation('aten::lstm_' + 'cell')[0]", "_op"),
    "destroyed_trap": ("import gc\nfor _o in gc.get_objects():\n    if isinstance(_o, torch.library.Library):\n"
                       "        _o._destroy()", NAME),
}
LSTM_TESTS = {"test_lstm_shapes", "test_lstm_values", "test_lstm_gradients", "test_lstm_training"}


# The sandboxed kernel server: the `server` fixture of conftest.py.


def _verdicts(server, source):
    nb = with_solution(source_nb("lstm_gru", "lstm"), "lstm_cell", source)
    return verify_notebook(server, "lstm_gru", "lstm", nb, seed=1234).verdicts


def test_an_honest_answer_passes(server):
    verdicts = _verdicts(server, answers_for("lstm_cell", correct=True)[0].source)
    assert verdicts and all(v is None for v in verdicts.values()), verdicts


@pytest.mark.parametrize("bypass", sorted(BYPASSES))
def test_no_route_reaches_the_genuine_fused_cell(server, bypass):
    prelude, call = BYPASSES[bypass]
    source = CLASS.format(prelude=prelude, call=call)
    verdicts = _verdicts(server, source)
    assert set(verdicts) == LSTM_TESTS
    for test_id, verdict in verdicts.items():
        assert verdict and ("calls" in verdict or "raised" in verdict), (bypass, test_id, verdict)
    if bypass == "destroyed_trap":
        assert "removed" in verdicts["test_lstm_values"]


@pytest.mark.parametrize("bypass", sorted(set(BYPASSES) - {"saved_reference"}))  # ordinary code: nothing to flag
def test_each_introspection_route_is_flagged_for_the_instructor(bypass):
    prelude, call = BYPASSES[bypass]
    assert scan(CLASS.format(prelude=prelude, call=call)), bypass


# ----------------------------------------------------------------------------- one_hot

ONE_HOT = """
import torch
import torch.nn.functional as F

{prelude}

def one_hot(indices, num_classes):
{body}
"""
HONEST_ONE_HOT = ("    out = torch.zeros(len(indices), num_classes)\n"
                  "    out[torch.arange(len(indices)), torch.as_tensor(indices)] = 1.0\n    return out")
# The operator's name is spelt so that no scan of names can see it: what is tested is the dispatcher trap.
OH = "'one_' + 'hot'"
ENCODE = "    return {fn}(torch.as_tensor(indices), num_classes).float()"
ONE_HOT_BYPASSES = {
    "direct": ("", ENCODE.format(fn="F.one_hot")),
    "getattr": ("", ENCODE.format(fn=f"getattr(F, {OH})")),
    "saved_reference": (f"_saved = getattr(F, {OH})", ENCODE.format(fn="_saved")),
    "c_function": (f"_c = getattr(torch._C._nn, {OH})", ENCODE.format(fn="_c")),
    "dispatcher_handle": (f"_op = getattr(torch.ops.aten, {OH}).default", ENCODE.format(fn="_op")),
    "jit_operation": ("_op = torch._C._jit_get_operation('aten::' + " + OH + ")[0]", ENCODE.format(fn="_op")),
    "caught_refusal": ("", "    try:\n    " + ENCODE.format(fn=f"getattr(F, {OH})") + "\n"
                           "    except Exception:\n        pass\n" + HONEST_ONE_HOT),
    "destroyed_trap": ("import gc\nfor _o in gc.get_objects():\n    if isinstance(_o, torch.library.Library):\n"
                       "        _o._destroy()", ENCODE.format(fn=f"getattr(F, {OH})")),
    # The check's own in-process refusal switched off: only the harness's trap is left to refuse.
    "probe_trap_disabled": ("import contextlib\nimport grading.instructor.exercises.hello_ohlol as _checks\n"
                            "_checks.refused_ops = lambda ops: contextlib.nullcontext([])",
                            ENCODE.format(fn=f"getattr(F, {OH})")),
    "destroyed_inside": ("import gc",
                         "    for o in gc.get_objects():\n        if isinstance(o, torch.library.Library):\n"
                         "            o._destroy()\n" + ENCODE.format(fn=f"getattr(F, {OH})")),
}
MODEL_TESTS = {"test_one_hot_rnn_head", "test_one_hot_rnn_head_training"}


def _one_hot_verdicts(server, source):
    nb = with_solution(source_nb("hello_ohlol", "one_hot_rnn"), "one_hot", source)
    return verify_notebook(server, "hello_ohlol", "one_hot_rnn", nb, seed=1234).verdicts


def test_an_honest_one_hot_passes_and_the_trap_leaves_the_notebook_s_model_alone(server):
    verdicts = _one_hot_verdicts(server, ONE_HOT.format(prelude="", body=HONEST_ONE_HOT))
    assert set(verdicts) == {"test_one_hot"} | MODEL_TESTS
    assert all(v is None for v in verdicts.values()), verdicts


@pytest.mark.parametrize("bypass", sorted(ONE_HOT_BYPASSES))
def test_no_route_reaches_the_genuine_one_hot(server, bypass):
    prelude, body = ONE_HOT_BYPASSES[bypass]
    verdicts = _one_hot_verdicts(server, ONE_HOT.format(prelude=prelude, body=body))
    verdict = verdicts["test_one_hot"]
    assert verdict and "one_hot calls" in verdict and "write it by hand" in verdict, (bypass, verdict)
    if bypass.startswith("destroyed"):
        assert "removed" in verdict, (bypass, verdict)
    for test_id in MODEL_TESTS:  # the course's own code still runs beside the trap
        assert verdicts[test_id] is None, (bypass, test_id, verdicts[test_id])


@pytest.mark.parametrize("bypass", ["c_function", "dispatcher_handle", "jit_operation", "destroyed_trap",
                                    "probe_trap_disabled", "destroyed_inside"])
def test_each_one_hot_introspection_route_is_flagged_for_the_instructor(bypass):
    prelude, body = ONE_HOT_BYPASSES[bypass]
    assert scan(ONE_HOT.format(prelude=prelude, body=body)), bypass
