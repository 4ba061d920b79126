"""Catalogue of the lstm_gru assignment: LSTMCellScratch (lstm_cell) and GRUCellScratch (gru_cell).

Correct answers differ in how they slice the gate blocks and combine the terms; every one gets
full marks. Wrong answers are the bugs students make (and the LSTM of Liu Er's notes), each with the
test cells it fails and a piece of the diagnosis it must receive.
"""

from . import Answer

LSTM_TESTS = ("test_lstm_shapes", "test_lstm_values", "test_lstm_gradients", "test_lstm_training")
GRU_TESTS = ("test_gru_shapes", "test_gru_values", "test_gru_gradients", "test_gru_training")
FORWARD_WRONG_LSTM = LSTM_TESTS[1:]
FORWARD_WRONG_GRU = GRU_TESTS[1:]

_PARAMS = '''        self.input_size = input_size
        self.hidden_size = hidden_size
        k = 1 / math.sqrt(hidden_size)
        self.weight_ih = nn.Parameter(torch.empty({n} * hidden_size, input_size).uniform_(-k, k))
        self.weight_hh = nn.Parameter(torch.empty({n} * hidden_size, hidden_size).uniform_(-k, k))
        self.bias_ih = nn.Parameter(torch.empty({n} * hidden_size).uniform_(-k, k))
        self.bias_hh = nn.Parameter(torch.empty({n} * hidden_size).uniform_(-k, k))'''

_LSTM = '''class LSTMCellScratch(nn.Module):
    """An LSTM cell written by hand."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
{init}

    def forward(self, x, state):
        """x: (batch, input_size); state = (h, c), each (batch, hidden_size). Returns (h', c')."""
{body}
'''

_GRU = '''class GRUCellScratch(nn.Module):
    """A GRU cell written by hand."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
{init}

    def forward(self, x, h):
        """x: (batch, input_size); h: (batch, hidden_size). Returns h'."""
{body}
'''


def _sized(n, weight_ih, weight_hh):
    """Parameters of the right kind with the shapes given (a size mixed up in one of them)."""
    return ("        self.input_size = input_size\n        self.hidden_size = hidden_size\n"
            "        k = 1 / math.sqrt(hidden_size)\n"
            f"        self.weight_ih = nn.Parameter(torch.empty({weight_ih}).uniform_(-k, k))\n"
            f"        self.weight_hh = nn.Parameter(torch.empty({weight_hh}).uniform_(-k, k))\n"
            f"        self.bias_ih = nn.Parameter(torch.empty({n} * hidden_size).uniform_(-k, k))\n"
            f"        self.bias_hh = nn.Parameter(torch.empty({n} * hidden_size).uniform_(-k, k))")


def _lstm(key, description, body, correct=True, fails=FORWARD_WRONG_LSTM, message="", init=None):
    source = _LSTM.format(init=init or _PARAMS.format(n=4), body=body)
    return Answer("lstm_cell", key, description, source, correct, () if correct else fails, message)


def _gru(key, description, body, correct=True, fails=FORWARD_WRONG_GRU, message="", init=None):
    source = _GRU.format(init=init or _PARAMS.format(n=3), body=body)
    return Answer("gru_cell", key, description, source, correct, () if correct else fails, message)


def _lstm_chunked(i="torch.sigmoid(i)", f="torch.sigmoid(f)", g="torch.tanh(g)", o="torch.sigmoid(o)",
                  order="i, f, g, o", state="h, c = state", gates=None, c_new="f * c + i * g",
                  h_new="o * torch.tanh(c_new)", ret="h_new, c_new"):
    gates = gates or "x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T + self.bias_hh"
    return (f"        {state}\n"
            f"        gates = {gates}\n"
            f"        {order} = gates.chunk(4, dim=1)\n"
            f"        i, f, g, o = {i}, {f}, {g}, {o}\n"
            f"        c_new = {c_new}\n"
            f"        h_new = {h_new}\n"
            f"        return {ret}")


def _gru_chunked(r="torch.sigmoid(x_r + h_r)", z="torch.sigmoid(x_z + h_z)", n="torch.tanh(x_n + r * h_n)",
                 order="r, z, n", out="(1 - z) * n + z * h", x_part=None, h_part=None):
    x_part = x_part or "x @ self.weight_ih.T + self.bias_ih"
    h_part = h_part or "h @ self.weight_hh.T + self.bias_hh"
    x_names = ", ".join(f"x_{g}" for g in order.split(", "))
    h_names = ", ".join(f"h_{g}" for g in order.split(", "))
    return (f"        {x_names} = ({x_part}).chunk(3, dim=1)\n"
            f"        {h_names} = ({h_part}).chunk(3, dim=1)\n"
            f"        r = {r}\n"
            f"        z = {z}\n"
            f"        n = {n}\n"
            f"        return {out}")


SEED_LSTM = '''class LSTMCellScratch(nn.Module):
    """The homework LSTM of Liu Er's notes, moved into the contract: one weight per gate (here the gate's block of
    weight_ih, with bias_ih) reused for x and for h, as in self.lineari(x) + self.lineari(hidden),
    and a sigmoid candidate."""

    def __init__(self, input_size, hidden_size):
        super().__init__()
        self.hidden_size = hidden_size
        self.weight_ih = nn.Parameter(torch.randn(4 * hidden_size, input_size) * 0.1)
        self.weight_hh = nn.Parameter(torch.randn(4 * hidden_size, hidden_size) * 0.1)
        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))
        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))
        self.sigmoid = nn.Sigmoid()
        self.tanh = nn.Tanh()

    def linear(self, gate, v):
        H = self.hidden_size
        return v @ self.weight_ih[gate * H:(gate + 1) * H].T + self.bias_ih[gate * H:(gate + 1) * H]

    def forward(self, x, state):
        hidden, C = state
        i = self.sigmoid(self.linear(0, x) + self.linear(0, hidden))
        f = self.sigmoid(self.linear(1, x) + self.linear(1, hidden))
        c = self.sigmoid(self.linear(2, x) + self.linear(2, hidden))
        o = self.sigmoid(self.linear(3, x) + self.linear(3, hidden))
        C = f * C + i * c
        hidden = o * self.tanh(C)
        return hidden, C
'''

LSTM_ANSWERS = [
    _lstm("chunk", "one matmul per input, chunk(4) into i, f, g, o", _lstm_chunked()),
    _lstm("slices", "index the gate blocks with slices of H",
          "        h, c = state\n        H = self.hidden_size\n"
          "        gates = x @ self.weight_ih.t() + self.bias_ih + h @ self.weight_hh.t() + self.bias_hh\n"
          "        i = torch.sigmoid(gates[:, 0:H])\n        f = torch.sigmoid(gates[:, H:2 * H])\n"
          "        g = torch.tanh(gates[:, 2 * H:3 * H])\n        o = torch.sigmoid(gates[:, 3 * H:])\n"
          "        c = f * c + i * g\n        return o * torch.tanh(c), c"),
    _lstm("per_gate_weights", "a separate F.linear per gate on weight slices",
          "        h, c = state\n        H = self.hidden_size\n\n"
          "        def gate(k):\n"
          "            rows = slice(k * H, (k + 1) * H)\n"
          "            return F.linear(x, self.weight_ih[rows], self.bias_ih[rows]) "
          "+ F.linear(h, self.weight_hh[rows], self.bias_hh[rows])\n\n"
          "        i, f, g, o = torch.sigmoid(gate(0)), torch.sigmoid(gate(1)), "
          "torch.tanh(gate(2)), torch.sigmoid(gate(3))\n"
          "        c_new = f * c + i * g\n        return o * torch.tanh(c_new), c_new"),
    _lstm("fused_concat", "one fused matmul on cat([x, h])",
          "        h, c = state\n"
          "        w = torch.cat([self.weight_ih, self.weight_hh], dim=1)\n"
          "        gates = torch.cat([x, h], dim=1) @ w.T + (self.bias_ih + self.bias_hh)\n"
          "        i, f, g, o = gates.split(self.hidden_size, dim=1)\n"
          "        c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)\n"
          "        return torch.sigmoid(o) * torch.tanh(c), c"),
    _lstm("addmm_view", "torch.addmm, then view(batch, 4, H)",
          "        h, c = state\n"
          "        gates = torch.addmm(self.bias_ih, x, self.weight_ih.t()) "
          "+ torch.addmm(self.bias_hh, h, self.weight_hh.t())\n"
          "        gates = gates.view(x.shape[0], 4, self.hidden_size)\n"
          "        i, f, o = torch.sigmoid(gates[:, 0]), torch.sigmoid(gates[:, 1]), torch.sigmoid(gates[:, 3])\n"
          "        g = torch.tanh(gates[:, 2])\n"
          "        c = f * c + i * g\n        return o * c.tanh(), c"),
    _lstm("nn_init_docstring", "nn.init in reset_parameters; docstrings that mention nn.LSTMCell",
          _lstm_chunked(),
          init="        self.hidden_size = hidden_size\n"
               "        self.weight_ih = nn.Parameter(torch.empty(4 * hidden_size, input_size))\n"
               "        self.weight_hh = nn.Parameter(torch.empty(4 * hidden_size, hidden_size))\n"
               "        self.bias_ih = nn.Parameter(torch.empty(4 * hidden_size))\n"
               "        self.bias_hh = nn.Parameter(torch.empty(4 * hidden_size))\n"
               "        self.reset_parameters()\n\n"
               "    def reset_parameters(self):\n"
               "        \"\"\"Same initialisation as nn.LSTMCell.\"\"\"\n"
               "        for p in self.parameters():\n"
               "            nn.init.uniform_(p, -self.hidden_size ** -0.5, self.hidden_size ** -0.5)"),
    Answer("lstm_cell", "seed_lstm", "the homework LSTM of Liu Er's notes (one weight per gate for x and h, "
           "bias twice, sigmoid candidate)", SEED_LSTM, False, LSTM_TESTS, "shared by x and h"),
    _lstm("sigmoid_candidate", "sigmoid for the candidate g", _lstm_chunked(g="torch.sigmoid(g)"),
          correct=False, message="g uses tanh"),
    _lstm("tanh_input_gate", "tanh for the input gate", _lstm_chunked(i="torch.tanh(i)"),
          correct=False, message="input gate"),
    _lstm("tanh_forget_gate", "tanh for the forget gate", _lstm_chunked(f="torch.tanh(f)"),
          correct=False, message="forget gate"),
    _lstm("tanh_output_gate", "tanh for the output gate", _lstm_chunked(o="torch.tanh(o)"),
          correct=False, message="output gate"),
    _lstm("order_ifog", "gate blocks read as i, f, o, g", _lstm_chunked(order="i, f, o, g"),
          correct=False, message="gate order wrong"),
    _lstm("order_figo", "gate blocks read as f, i, g, o", _lstm_chunked(order="f, i, g, o"),
          correct=False, message="gate order wrong"),
    _lstm("memory_dropped", "c' = i * g: the cell memory is not carried", _lstm_chunked(c_new="i * g"),
          correct=False, message="cell memory dropped"),
    _lstm("one_minus_forget", "c' = (1 - f) * c + i * g", _lstm_chunked(c_new="(1 - f) * c + i * g"),
          correct=False, message="forget gate"),
    _lstm("no_tanh_on_c", "h' = o * c'", _lstm_chunked(h_new="o * c_new"),
          correct=False, message="output gate"),
    _lstm("old_c_in_h", "h' = o * tanh(c) with the old c", _lstm_chunked(h_new="o * torch.tanh(c)"),
          correct=False, message="NEW cell state"),
    _lstm("no_bias_hh", "leaves out bias_hh",
          _lstm_chunked(gates="x @ self.weight_ih.T + self.bias_ih + h @ self.weight_hh.T"),
          correct=False, message="leaves out bias_hh"),
    _lstm("shared_weights", "h through weight_ih too (one weight for x and h)",
          _lstm_chunked(gates="x @ self.weight_ih.T + self.bias_ih + h @ self.weight_ih.T + self.bias_hh"),
          correct=False, fails=LSTM_TESTS, message="shared by x and h"),
    _lstm("state_swapped", "unpacks the state as (c, h)", _lstm_chunked(state="c, h = state"),
          correct=False, message="state order"),
    _lstm("returns_c_h", "returns (c', h')", _lstm_chunked(ret="c_new, h_new"),
          correct=False, message="state order"),
    _lstm("detached_cell", "detaches c: the gradient along the cell path is cut",
          _lstm_chunked(c_new="f * c.detach() + i * g"),
          correct=False, fails=("test_lstm_gradients",), message="gradient with respect to c"),
    _lstm("buffers", "register_buffer instead of nn.Parameter: never trained", _lstm_chunked(),
          correct=False, fails=("test_lstm_shapes", "test_lstm_gradients", "test_lstm_training"),
          message="nn.Parameter",
          init="        self.hidden_size = hidden_size\n"
               "        self.register_buffer('weight_ih', torch.randn(4 * hidden_size, input_size) * 0.1)\n"
               "        self.register_buffer('weight_hh', torch.randn(4 * hidden_size, hidden_size) * 0.1)\n"
               "        self.register_buffer('bias_ih', torch.zeros(4 * hidden_size))\n"
               "        self.register_buffer('bias_hh', torch.zeros(4 * hidden_size))"),
    _lstm("plain_tensors", "plain tensor attributes instead of nn.Parameter", _lstm_chunked(),
          correct=False, fails=LSTM_TESTS, message="nn.Parameter",
          init="        self.hidden_size = hidden_size\n"
               "        self.weight_ih = torch.randn(4 * hidden_size, input_size, requires_grad=True)\n"
               "        self.weight_hh = torch.randn(4 * hidden_size, hidden_size, requires_grad=True)\n"
               "        self.bias_ih = torch.zeros(4 * hidden_size, requires_grad=True)\n"
               "        self.bias_hh = torch.zeros(4 * hidden_size, requires_grad=True)"),
    _lstm("transposed_weights", "weight_ih stored as (input_size, 4H), used as x @ weight_ih",
          _lstm_chunked(gates="x @ self.weight_ih + self.bias_ih + h @ self.weight_hh + self.bias_hh"),
          correct=False, fails=LSTM_TESTS, message="(4*hidden_size, input_size)",
          init="        self.hidden_size = hidden_size\n"
               "        self.weight_ih = nn.Parameter(torch.randn(input_size, 4 * hidden_size) * 0.1)\n"
               "        self.weight_hh = nn.Parameter(torch.randn(hidden_size, 4 * hidden_size) * 0.1)\n"
               "        self.bias_ih = nn.Parameter(torch.zeros(4 * hidden_size))\n"
               "        self.bias_hh = nn.Parameter(torch.zeros(4 * hidden_size))"),
    # A size mixed up in a weight's shape: the gate probes (input_size == hidden_size) cannot see it; every test
    # with input_size != hidden_size can.
    _lstm("weight_hh_input_size", "weight_hh created as (4 * hidden_size, input_size)", _lstm_chunked(),
          correct=False, fails=LSTM_TESTS, message="weight_hh has shape",
          init=_sized(4, "4 * hidden_size, input_size", "4 * hidden_size, input_size")),
    _lstm("weight_ih_hidden_size", "weight_ih created as (4 * hidden_size, hidden_size)", _lstm_chunked(),
          correct=False, fails=LSTM_TESTS, message="weight_ih has shape",
          init=_sized(4, "4 * hidden_size, hidden_size", "4 * hidden_size, hidden_size")),
    _lstm("weight_ih_sizes_swapped", "weight_ih created as (4 * input_size, hidden_size)", _lstm_chunked(),
          correct=False, fails=LSTM_TESTS, message="weight_ih has shape",
          init=_sized(4, "4 * input_size, hidden_size", "4 * hidden_size, hidden_size")),
    Answer("lstm_cell", "subclass_lstmcell", "subclasses nn.LSTMCell",
           "class LSTMCellScratch(nn.LSTMCell):\n"
           "    def __init__(self, input_size, hidden_size):\n"
           "        super().__init__(input_size, hidden_size)\n", False, LSTM_TESTS, "earns no points"),
    _lstm("wrap_lstmcell", "wraps an nn.LSTMCell and hands it the weights",
          "        cell = nn.LSTMCell(self.input_size, self.hidden_size, dtype=x.dtype)\n"
          "        cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh = "
          "self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh\n"
          "        return cell(x, state)",
          correct=False, fails=LSTM_TESTS, message="earns no points"),
    _lstm("torch_lstm_cell", "calls torch.lstm_cell",
          "        return torch.lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)",
          correct=False, fails=LSTM_TESTS, message="earns no points"),
    _lstm("vf_lstm_cell", "calls torch._VF.lstm_cell",
          "        return torch._VF.lstm_cell(x, state, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)",
          correct=False, fails=LSTM_TESTS, message="earns no points"),
]

GRU_ANSWERS = [
    _gru("chunk", "chunk(3) of the input and hidden terms", _gru_chunked()),
    _gru("interpolated", "h + (1 - z) * (n - h)", _gru_chunked(out="h + (1 - z) * (n - h)")),
    _gru("lerp", "torch.lerp(n, h, z)", _gru_chunked(out="torch.lerp(n, h, z)")),
    _gru("per_gate_slices", "F.linear per gate on weight slices",
         "        H = self.hidden_size\n\n"
         "        def term(w, b, v, k):\n"
         "            return F.linear(v, w[k * H:(k + 1) * H], b[k * H:(k + 1) * H])\n\n"
         "        r = torch.sigmoid(term(self.weight_ih, self.bias_ih, x, 0) "
         "+ term(self.weight_hh, self.bias_hh, h, 0))\n"
         "        z = torch.sigmoid(term(self.weight_ih, self.bias_ih, x, 1) "
         "+ term(self.weight_hh, self.bias_hh, h, 1))\n"
         "        n = torch.tanh(term(self.weight_ih, self.bias_ih, x, 2) "
         "+ r * term(self.weight_hh, self.bias_hh, h, 2))\n"
         "        return (1 - z) * n + z * h"),
    _gru("fused_rz", "one fused matmul on cat([x, h]) for r and z, n apart",
         "        H = self.hidden_size\n"
         "        w = torch.cat([self.weight_ih[:2 * H], self.weight_hh[:2 * H]], dim=1)\n"
         "        rz = torch.sigmoid(torch.cat([x, h], dim=1) @ w.T + self.bias_ih[:2 * H] + self.bias_hh[:2 * H])\n"
         "        r, z = rz[:, :H], rz[:, H:]\n"
         "        n = torch.tanh(x @ self.weight_ih[2 * H:].T + self.bias_ih[2 * H:] "
         "+ r * (h @ self.weight_hh[2 * H:].T + self.bias_hh[2 * H:]))\n"
         "        return (1 - z) * n + z * h"),
    _gru("addmm_split", "torch.addmm and split",
         "        gi = torch.addmm(self.bias_ih, x, self.weight_ih.t()).split(self.hidden_size, 1)\n"
         "        gh = torch.addmm(self.bias_hh, h, self.weight_hh.t()).split(self.hidden_size, 1)\n"
         "        r = (gi[0] + gh[0]).sigmoid()\n        z = (gi[1] + gh[1]).sigmoid()\n"
         "        n = (gi[2] + r * gh[2]).tanh()\n        return n + z * (h - n)"),
    _gru("reset_before_matmul", "reset applied to h before the matmul (original paper)",
         "        H = self.hidden_size\n"
         "        x_r, x_z, x_n = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)\n"
         "        h_r, h_z, _ = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)\n"
         "        r = torch.sigmoid(x_r + h_r)\n        z = torch.sigmoid(x_z + h_z)\n"
         "        n = torch.tanh(x_n + (r * h) @ self.weight_hh[2 * H:].T + self.bias_hh[2 * H:])\n"
         "        return (1 - z) * n + z * h",
         correct=False, message="reset applied after the matmul"),
    _gru("b_hn_outside", "b_hn added outside the reset gate",
         "        H = self.hidden_size\n"
         "        x_r, x_z, x_n = (x @ self.weight_ih.T + self.bias_ih).chunk(3, dim=1)\n"
         "        h_r, h_z, _ = (h @ self.weight_hh.T + self.bias_hh).chunk(3, dim=1)\n"
         "        r = torch.sigmoid(x_r + h_r)\n        z = torch.sigmoid(x_z + h_z)\n"
         "        n = torch.tanh(x_n + r * (h @ self.weight_hh[2 * H:].T) + self.bias_hh[2 * H:])\n"
         "        return (1 - z) * n + z * h",
         correct=False, message="r * (W_hn h + b_hn)"),
    _gru("no_reset", "reset gate never used", _gru_chunked(n="torch.tanh(x_n + h_n)"),
         correct=False, message="r * (W_hn h + b_hn)"),
    _gru("z_swapped", "h' = z * n + (1 - z) * h", _gru_chunked(out="z * n + (1 - z) * h"),
         correct=False, message="not the other way"),
    _gru("no_z_h", "h' = (1 - z) * n", _gru_chunked(out="(1 - z) * n"),
         correct=False, message="update gate"),
    _gru("sigmoid_candidate", "sigmoid for n", _gru_chunked(n="torch.sigmoid(x_n + r * h_n)"),
         correct=False, message="n = tanh"),
    _gru("tanh_reset", "tanh for r", _gru_chunked(r="torch.tanh(x_r + h_r)"),
         correct=False, message="reset gate"),
    _gru("tanh_update", "tanh for z", _gru_chunked(z="torch.tanh(x_z + h_z)"),
         correct=False, message="update gate"),
    _gru("order_zrn", "gate blocks read as z, r, n", _gru_chunked(order="z, r, n"),
         correct=False, message="gate order wrong"),
    _gru("no_bias_hh", "leaves out bias_hh", _gru_chunked(h_part="h @ self.weight_hh.T"),
         correct=False, message="leaves out bias_hh"),
    _gru("shared_weights", "h through weight_ih too", _gru_chunked(h_part="h @ self.weight_ih.T + self.bias_hh"),
         correct=False, fails=GRU_TESTS, message="shared by x and h"),
    _gru("detached_h", "z * h.detach(): the gradient along the carried state is cut",
         _gru_chunked(out="(1 - z) * n + z * h.detach()"),
         correct=False, fails=("test_gru_gradients",), message="gradient with respect to h"),
    _gru("buffers", "register_buffer instead of nn.Parameter", _gru_chunked(),
         correct=False, fails=("test_gru_shapes", "test_gru_gradients", "test_gru_training"), message="nn.Parameter",
         init="        self.hidden_size = hidden_size\n"
              "        self.register_buffer('weight_ih', torch.randn(3 * hidden_size, input_size) * 0.1)\n"
              "        self.register_buffer('weight_hh', torch.randn(3 * hidden_size, hidden_size) * 0.1)\n"
              "        self.register_buffer('bias_ih', torch.zeros(3 * hidden_size))\n"
              "        self.register_buffer('bias_hh', torch.zeros(3 * hidden_size))"),
    _gru("weight_hh_input_size", "weight_hh created as (3 * hidden_size, input_size)", _gru_chunked(),
         correct=False, fails=GRU_TESTS, message="weight_hh has shape",
         init=_sized(3, "3 * hidden_size, input_size", "3 * hidden_size, input_size")),
    _gru("weight_ih_hidden_size", "weight_ih created as (3 * hidden_size, hidden_size)", _gru_chunked(),
         correct=False, fails=GRU_TESTS, message="weight_ih has shape",
         init=_sized(3, "3 * hidden_size, hidden_size", "3 * hidden_size, hidden_size")),
    Answer("gru_cell", "subclass_grucell", "subclasses nn.GRUCell",
           "class GRUCellScratch(nn.GRUCell):\n"
           "    def forward(self, x, h):\n"
           "        return super().forward(x, h)\n", False, GRU_TESTS, "earns no points"),
    _gru("wrap_grucell", "wraps an nn.GRUCell that shares the parameters",
         "        cell = nn.GRUCell(x.shape[1], h.shape[1], dtype=x.dtype)\n"
         "        cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh = "
         "self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh\n"
         "        return cell(x, h)",
         correct=False, fails=GRU_TESTS, message="earns no points"),
    _gru("vf_gru_cell", "calls torch._VF.gru_cell",
         "        return torch._VF.gru_cell(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)",
         correct=False, fails=GRU_TESTS, message="earns no points"),
    _gru("getattr_gru_cell", "reaches torch.gru_cell through getattr",
         "        fn = getattr(torch, 'gru' + '_cell')\n"
         "        return fn(x, h, self.weight_ih, self.weight_hh, self.bias_ih, self.bias_hh)",
         correct=False, fails=GRU_TESTS, message="earns no points"),
]

ANSWERS = LSTM_ANSWERS + GRU_ANSWERS
