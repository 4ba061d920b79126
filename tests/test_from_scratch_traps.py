"""From scratch: torch's fused cells are out of a solution cell's reach in the verifier.

Each answer below computes the LSTM through torch's genuine fused operator by a route that
Python-level wrappers cannot close (the trap's closure, a saved reference, the dispatcher's
own handles, destroying the trap's registration through ``gc``). They are run through the
real verifier in the real sandbox; every one must fail every LSTM test cell with the
from-scratch message, while an honest answer passes.
"""

import pytest

from conftest import source_nb, with_solution
from grading.instructor import sandbox
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


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    scratch = tmp_path_factory.mktemp("traps")
    scratch.chmod(0o755)
    scratch.parent.chmod(0o755)
    sandbox.build_mpl_cache(scratch / "mpl")
    server = sandbox.KernelServer(0, True, scratch / "w0")
    server.start(scratch / "mpl", sandbox.stage_package(scratch / "package"))
    yield server
    server.stop()
    sandbox.cleanup_scratch(scratch)


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
