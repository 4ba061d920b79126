"""Catalogue of the rnn_basics assignment."""

from . import Answer

_STEP = '''def rnn_cell_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
    """One tanh RNN step."""
{body}
'''


def _step(key, description, body, correct=True, message=""):
    return Answer("rnn_cell_step", key, description, _STEP.format(body=body), correct,
                  () if correct else ("test_rnn_cell_step",), message)


_RUN = '''def run_cell(cell, inputs, h0):
    """Run cell over time."""
{body}
'''


def _run(key, description, body, correct=True, message=""):
    return Answer("run_cell", key, description, _RUN.format(body=body), correct,
                  () if correct else ("test_run_cell",), message)


_SHAPES = '''def rnn_shapes(seq_len, batch_size, input_size, hidden_size, num_layers, batch_first=False):
    """Shapes of nn.RNN's tensors."""
{body}
'''


def _shapes(key, description, body, correct=True, fails=(), message=""):
    return Answer("rnn_shapes", key, description, _SHAPES.format(body=body), correct, fails, message)


_LAST = '''def last_time_step(output, batch_first=False):
    """Output at the last time step."""
{body}
'''


def _last(key, description, body, correct=True, message=""):
    return Answer("last_time_step", key, description, _LAST.format(body=body), correct,
                  () if correct else ("test_last_time_step",), message)


ANSWERS = [
    _step("matmul", "@ with transposed weights",
          "    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)"),
    _step("addmm", "torch.addmm",
          "    return torch.tanh(torch.addmm(bias_ih, x, weight_ih.t()) + torch.addmm(bias_hh, h, weight_hh.t()))"),
    _step("linear", "F.linear twice",
          "    return torch.tanh(F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh))"),
    _step("concat", "one matmul on [x, h]",
          "    w = torch.cat([weight_ih, weight_hh], dim=1)\n"
          "    return torch.tanh(torch.cat([x, h], dim=1) @ w.T + bias_ih + bias_hh)"),
    _step("einsum", "einsum",
          "    return torch.tanh(torch.einsum('bi,hi->bh', x, weight_ih) + torch.einsum('bk,hk->bh', h, weight_hh)"
          " + bias_ih + bias_hh)"),
    _step("no_tanh", "forgets the activation", "    return x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh",
          correct=False, message="missing the activation"),
    _step("sigmoid", "sigmoid instead of tanh",
          "    return torch.sigmoid(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh)",
          correct=False, message="uses sigmoid"),
    _step("one_bias", "drops bias_hh", "    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T)",
          correct=False, message="bias_ih + bias_hh"),
    _step("swapped_weights", "uses weight_ih for the hidden term",
          "    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_ih.T + bias_hh)",
          correct=False, message="Check the hidden term"),
    _step("hh_not_transposed", "forgets to transpose the square weight_hh",
          "    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh + bias_hh)",
          correct=False, message="Check the hidden term"),
    _step("ih_not_transposed", "multiplies x by weight_ih without transposing it",
          "    return torch.tanh(x @ weight_ih + bias_ih + h @ weight_hh.T + bias_hh)",
          correct=False, message="multiply by the transpose, x @ weight_ih.T"),
    _step("column_vectors", "W x with column vectors: returns (hidden_size, batch)",
          "    return torch.tanh(weight_ih @ x.T + bias_ih[:, None] + weight_hh @ h.T + bias_hh[:, None])",
          correct=False, message="you swapped batch and hidden_size"),
    _step("detached", "breaks the graph with .detach()",
          "    return torch.tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).detach()",
          correct=False, message="require grad"),
    _step("fused", "calls torch's fused cell",
          "    return torch.rnn_tanh_cell(x, h, weight_ih, weight_hh, bias_ih, bias_hh)",
          correct=False, message="fused"),
    _step("fused_getattr", "reaches torch's fused cell through getattr",
          "    return getattr(torch, 'rnn_' + 'tanh_cell')(x, h, weight_ih, weight_hh, bias_ih, bias_hh)",
          correct=False, message="fused"),
    _run("loop_stack", "loop, list, torch.stack",
         "    h, outs = h0, []\n    for x_t in inputs:\n        h = cell(x_t, h)\n        outs.append(h)\n"
         "    return torch.stack(outs), h"),
    _run("preallocated", "preallocated output tensor",
         "    h = h0\n    outputs = h0.new_empty(inputs.shape[0], *h0.shape)\n    for t in range(inputs.shape[0]):\n"
         "        h = cell(inputs[t], h)\n        outputs[t] = h\n    return outputs, h"),
    _run("unbind", "torch.unbind and a list comprehension",
         "    hs = [h0]\n    for x_t in torch.unbind(inputs, 0):\n        hs.append(cell(x_t, hs[-1]))\n"
         "    return torch.stack(hs[1:]), hs[-1]"),
    _run("reset_h", "passes h0 at every step",
         "    outs = []\n    for x_t in inputs:\n        outs.append(cell(x_t, h0))\n"
         "    return torch.stack(outs), outs[-1]",
         correct=False, message="h0 again"),
    _run("stored_before", "stores h before the step",
         "    h, outs = h0, []\n    for x_t in inputs:\n        outs.append(h)\n        h = cell(x_t, h)\n"
         "    return torch.stack(outs), h",
         correct=False, message="AFTER step"),
    _run("list_outputs", "returns a Python list",
         "    h, outs = h0, []\n    for x_t in inputs:\n        h = cell(x_t, h)\n        outs.append(h)\n"
         "    return outs, h",
         correct=False, message="torch.stack"),
    _run("h_n_with_layers", "returns h_n with a num_layers dimension",
         "    h, outs = h0, []\n    for x_t in inputs:\n        h = cell(x_t, h)\n        outs.append(h)\n"
         "    return torch.stack(outs), h.unsqueeze(0)",
         correct=False, message="h_n has shape"),
    _run("stacked_batch_first", "stacks the steps along dim 1: (batch, seq_len, hidden_size)",
         "    h, outs = h0, []\n    for x_t in inputs:\n        h = cell(x_t, h)\n        outs.append(h)\n"
         "    return torch.stack(outs, dim=1), h",
         correct=False, message="you swapped seq_len and batch"),
    _shapes("branch", "if/else on batch_first",
            "    if batch_first:\n"
            "        x, out = (batch_size, seq_len, input_size), (batch_size, seq_len, hidden_size)\n"
            "    else:\n"
            "        x, out = (seq_len, batch_size, input_size), (seq_len, batch_size, hidden_size)\n"
            "    h = (num_layers, batch_size, hidden_size)\n    return {'input': x, 'h0': h, 'output': out, 'h_n': h}"),
    _shapes("swap", "builds then swaps the first two dims",
            "    def order(a, b, c):\n        return (b, a, c) if batch_first else (a, b, c)\n"
            "    return dict(input=order(seq_len, batch_size, input_size), h0=(num_layers, batch_size, hidden_size),\n"
            "                output=order(seq_len, batch_size, hidden_size), "
            "h_n=(num_layers, batch_size, hidden_size))"),
    _shapes("torch_size", "returns torch.Size values",
            "    first = (batch_size, seq_len) if batch_first else (seq_len, batch_size)\n"
            "    h = torch.Size([num_layers, batch_size, hidden_size])\n"
            "    return {'input': torch.Size([*first, input_size]), 'h0': h, "
            "'output': torch.Size([*first, hidden_size]), 'h_n': h}"),
    _shapes("batch_first_hidden", "swaps h0 and h_n too with batch_first", correct=False,
            body="    if batch_first:\n"
                 "        return {'input': (batch_size, seq_len, input_size), "
                 "'h0': (batch_size, num_layers, hidden_size),\n"
                 "                'output': (batch_size, seq_len, hidden_size), "
                 "'h_n': (batch_size, num_layers, hidden_size)}\n"
                 "    h = (num_layers, batch_size, hidden_size)\n"
                 "    return {'input': (seq_len, batch_size, input_size), 'h0': h, "
                 "'output': (seq_len, batch_size, hidden_size), 'h_n': h}",
            fails=("test_rnn_shapes_batch_first",), message="h0 and h_n stay"),
    _shapes("ignores_batch_first", "ignores batch_first", correct=False,
            body="    h = (num_layers, batch_size, hidden_size)\n"
                 "    return {'input': (seq_len, batch_size, input_size), 'h0': h, "
                 "'output': (seq_len, batch_size, hidden_size), 'h_n': h}",
            fails=("test_rnn_shapes_batch_first",), message="batch dimension comes first"),
    _shapes("no_layers", "forgets num_layers in h0 and h_n", correct=False,
            body="    first = (batch_size, seq_len) if batch_first else (seq_len, batch_size)\n"
                 "    return {'input': (*first, input_size), 'h0': (1, batch_size, hidden_size), "
                 "'output': (*first, hidden_size), 'h_n': (1, batch_size, hidden_size)}",
            fails=("test_rnn_shapes", "test_rnn_shapes_batch_first"), message="num_layers"),
    _shapes("hidden_layers_swapped", "h0 and h_n as (hidden_size, batch, num_layers)", correct=False,
            body="    first = (batch_size, seq_len) if batch_first else (seq_len, batch_size)\n"
                 "    h = (hidden_size, batch_size, num_layers)\n"
                 "    return {'input': (*first, input_size), 'h0': h, 'output': (*first, hidden_size), 'h_n': h}",
            fails=("test_rnn_shapes", "test_rnn_shapes_batch_first"), message="you swapped hidden_size and num_layers"),
    _shapes("batch_first_inverted", "takes batch-first as the default layout", correct=False,
            body="    first = (seq_len, batch_size) if batch_first else (batch_size, seq_len)\n"
                 "    h = (num_layers, batch_size, hidden_size)\n"
                 "    return {'input': (*first, input_size), 'h0': h, 'output': (*first, hidden_size), 'h_n': h}",
            fails=("test_rnn_shapes", "test_rnn_shapes_batch_first"), message="you swapped seq_len and batch"),
    _last("branch", "indexes the time dimension", "    return output[:, -1] if batch_first else output[-1]"),
    _last("select", "Tensor.select on the time dimension", "    return output.select(1 if batch_first else 0, -1)"),
    _last("always_first", "output[-1] whatever the layout", "    return output[-1]",
          correct=False, message="output[:, -1]"),
    _last("always_second", "output[:, -1] whatever the layout", "    return output[:, -1]",
          correct=False, message="use output[-1]"),
]
