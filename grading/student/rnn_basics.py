"""Visible checks of the ``rnn_basics`` assignment (shipped to students).

Each check compares your code with PyTorch's own modules on one small example and
stops at the first problem, in the order type -> dtype -> shape -> values -> gradients.
"""

from __future__ import annotations

import torch

from .checks import CheckFailed, call, check_close, check_dtype, check_shape, check_type, compare_table, max_abs_diff


def _example(batch_size=2, input_size=3, hidden_size=4, dtype=torch.float32, seed=0):
    gen = torch.Generator().manual_seed(seed)
    cell = torch.nn.RNNCell(input_size, hidden_size).to(dtype)
    with torch.no_grad():
        for p in cell.parameters():
            p.copy_(torch.randn(p.shape, generator=gen, dtype=dtype) * 0.5)
    x = torch.randn(batch_size, input_size, generator=gen, dtype=dtype)
    h = torch.randn(batch_size, hidden_size, generator=gen, dtype=dtype)
    return cell, x, h


def check_rnn_cell_step(rnn_cell_step) -> None:
    """Compare ``rnn_cell_step`` with ``torch.nn.RNNCell`` on a batch of 2 (input_size 3, hidden_size 4)."""
    cell, x, h = _example()
    args = (x, h, cell.weight_ih, cell.weight_hh, cell.bias_ih, cell.bias_hh)
    out = call(rnn_cell_step, *args)
    check_type(out, torch.Tensor, "rnn_cell_step(...)", "Return the new hidden state h' as a tensor.")
    check_dtype(out, x.dtype, "h'", "Keep the dtype of x: avoid torch.tensor(...) or .double() inside.")
    check_shape(out, (2, 4), "h'", ("batch", "hidden_size"),
                "x @ weight_ih.T gives (batch, hidden_size): weight_ih is (hidden_size, input_size).")
    expected = cell(x, h)
    pre_activation = torch.atanh(expected.detach().clamp(-1 + 1e-7, 1 - 1e-7))
    for what, squash in (("the sum without an activation", lambda t: t), ("sigmoid of the sum", torch.sigmoid),
                         ("relu of the sum", torch.relu)):
        if max_abs_diff(out, squash(pre_activation)) <= 1e-4:
            raise CheckFailed(f"h' is {what}: the RNN cell applies tanh, "
                              "h' = tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).")
    check_close(out, expected, "h'", atol=1e-6,
                hint="h' = tanh(x @ weight_ih.T + bias_ih + h @ weight_hh.T + bias_hh).")
    if not out.requires_grad:
        raise CheckFailed("h' is detached from the weights: "
                          "use torch operations only (no .detach(), .item(), torch.tensor).")
    print(compare_table({"h' vs nn.RNNCell": (out.detach(), expected.detach())}))
    print("rnn_cell_step: visible checks passed.")


def check_run_cell(run_cell) -> None:
    """Run ``run_cell`` with an ``nn.RNNCell`` over a (seq_len=5, batch=2, input_size=3) sequence.

    The outputs and h_n are compared with ``nn.RNN``'s.
    """
    cell, _, h0 = _example()
    gen = torch.Generator().manual_seed(1)
    inputs = torch.randn(5, 2, 3, generator=gen)
    result = call(run_cell, cell, inputs, h0)
    check_type(result, tuple, "run_cell(...)", "Return a pair: (outputs, h_n).")
    if len(result) != 2:
        raise CheckFailed(f"run_cell should return 2 values (outputs, h_n), got {len(result)}.")
    outputs, h_n = result
    check_type(outputs, torch.Tensor, "outputs", "Stack the hidden state of every step: torch.stack(hs, dim=0).")
    check_shape(outputs, (5, 2, 4), "outputs", ("seq_len", "batch", "hidden_size"))
    check_type(h_n, torch.Tensor, "h_n")
    check_shape(h_n, (2, 4), "h_n", ("batch", "hidden_size"), "h_n is the last hidden state of the single cell.")
    rnn = torch.nn.RNN(3, 4)
    with torch.no_grad():
        rnn.weight_ih_l0.copy_(cell.weight_ih)
        rnn.weight_hh_l0.copy_(cell.weight_hh)
        rnn.bias_ih_l0.copy_(cell.bias_ih)
        rnn.bias_hh_l0.copy_(cell.bias_hh)
        expected, expected_h_n = rnn(inputs, h0.unsqueeze(0))
    check_close(outputs, expected, "outputs", atol=1e-6,
                hint="outputs[t] is the hidden state after step t; carry h from one step to the next.")
    check_close(h_n, expected_h_n[0], "h_n", atol=1e-6, hint="h_n is the hidden state after the last step.")
    print(compare_table({"outputs vs nn.RNN": (outputs.detach(), expected),
                         "h_n vs nn.RNN": (h_n.detach(), expected_h_n[0])}))
    print("run_cell: visible checks passed.")


def check_rnn_shapes(rnn_shapes, batch_first: bool = False) -> None:
    """Compare ``rnn_shapes`` with the shapes of a real ``nn.RNN``.

    The RNN has seq_len=5, batch=3, input_size=4, hidden_size=2, num_layers=2.
    """
    args = dict(seq_len=5, batch_size=3, input_size=4, hidden_size=2, num_layers=2, batch_first=batch_first)
    shapes = call(rnn_shapes, **args)
    check_type(shapes, dict, "rnn_shapes(...)", 'Return a dict with keys "input", "h0", "output", "h_n".')
    rnn = torch.nn.RNN(4, 2, num_layers=2, batch_first=batch_first)
    x = torch.zeros((3, 5, 4) if batch_first else (5, 3, 4))
    h0 = torch.zeros(2, 3, 2)
    output, h_n = rnn(x, h0)
    for key, tensor in {"input": x, "h0": h0, "output": output, "h_n": h_n}.items():
        if key not in shapes:
            raise CheckFailed(f'rnn_shapes(...) has no key "{key}".')
        got = tuple(shapes[key])
        if got != tuple(tensor.shape):
            hint = ""
            if key in ("h0", "h_n"):
                hint = " h0 and h_n are (num_layers, batch, hidden_size), with or without batch_first."
            raise CheckFailed(f"With {args}: {key} should be {tuple(tensor.shape)}, got {got}.{hint}")
    print(f"rnn_shapes (batch_first={batch_first}): visible checks passed.")


def check_last_time_step(last_time_step) -> None:
    """Check ``last_time_step`` against the top layer of h_n of a real ``nn.RNN``, both layouts."""
    for batch_first in (False, True):
        torch.manual_seed(0)
        rnn = torch.nn.RNN(3, 4, num_layers=2, batch_first=batch_first)
        x = torch.randn((2, 5, 3) if batch_first else (5, 2, 3))
        output, h_n = rnn(x)
        last = call(last_time_step, output, batch_first=batch_first)
        check_type(last, torch.Tensor, "last_time_step(...)")
        check_shape(last, (2, 4), f"last_time_step(output, batch_first={batch_first})", ("batch", "hidden_size"),
                    "Take the time step out: the time dimension is dim 1 with batch_first=True, dim 0 otherwise.")
        check_close(last, h_n[-1], f"last_time_step(output, batch_first={batch_first})", atol=1e-6,
                    hint="It must equal h_n[-1], the top layer's last hidden state.")
    print("last_time_step: visible checks passed (equals h_n[-1] in both layouts).")
