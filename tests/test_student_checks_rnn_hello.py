"""Unit tests of the visible checks of rnn_basics and hello_ohlol (grading.student).

Every size a visible check hands to the student's code differs from every other, so that swapping
two of them fails; the from-scratch rule of one_hot is enforced in torch's dispatcher and leaves
F.one_hot working once the check is over.
"""

from __future__ import annotations

import contextlib
import io
import itertools

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from grading.student import checks, hello_ohlol, rnn_basics


def _distinct(sizes: dict[str, int]) -> None:
    for (a, x), (b, y) in itertools.combinations(sizes.items(), 2):
        assert x != y, f"{a} = {b} = {x}: swapping them would pass"


def _quiet(fn, *args):
    with contextlib.redirect_stdout(io.StringIO()):
        return fn(*args)


# ----------------------------------------------------------------------------- shared helpers


def test_shape_problem_names_a_swap_of_two_dimensions():
    dims = ("num_layers", "batch", "hidden_size")
    message = checks.shape_problem("h0", (6, 3, 2), (2, 3, 6), dims, "Why.")
    assert message == ("h0 has shape (6, 3, 2), expected (num_layers=2, batch=3, hidden_size=6): "
                       "you swapped hidden_size and num_layers. Why.")
    assert checks.swapped_dims((3, 5, 4), (5, 3, 4), ("seq_len", "batch", "input_size")) == "seq_len and batch"
    assert checks.swapped_dims((3, 5, 4), (5, 3, 2), ("seq_len", "batch", "input_size")) == ""
    assert "you swapped" not in checks.shape_problem("h", (1, 2, 4), (2, 4), ("batch", "hidden_size"))
    with pytest.raises(checks.CheckFailed, match="You swapped batch and hidden_size"):
        checks.check_shape(torch.zeros(4, 3), (3, 4), "h'", ("batch", "hidden_size"))


def test_refused_ops_records_every_route_and_restores_the_operator():
    x = torch.tensor([1, 0])
    with checks.refused_ops({"one_hot": "F.one_hot"}) as calls:
        for route in (F.one_hot, getattr(F, "one_" + "hot"), torch._C._nn.one_hot, torch.ops.aten.one_hot.default):
            with pytest.raises(checks.RefusedCall):
                route(x, 3)
    assert calls == ["F.one_hot"] * 4
    assert torch.equal(F.one_hot(x, 3), torch.tensor([[0, 1, 0], [1, 0, 0]]))


def test_call_by_hand_fails_a_refused_call_even_when_the_code_catches_it():
    def sneaky(indices, num_classes):
        try:
            return F.one_hot(torch.as_tensor(indices), num_classes).float()
        except Exception:
            return torch.eye(num_classes)[torch.as_tensor(indices)]

    with pytest.raises(checks.CheckFailed, match="one_hot calls torch.nn.functional.one_hot: write it by hand"):
        checks.call_by_hand(sneaky, [1, 0], 3, name="one_hot", ops=hello_ohlol.ONE_HOT_OPS,
                            reason=hello_ohlol.ONE_HOT_REASON)


def test_names_used_sees_nested_functions_and_base_classes():
    def outer():
        def inner():
            return torch.rnn_tanh_cell
        return inner

    assert "rnn_tanh_cell" in checks.names_used(outer)
    assert "RNNCell" in checks.names_used(type("Cell", (nn.RNNCell,), {}))


# ----------------------------------------------------------------------------- sizes of every visible check


def test_rnn_cell_step_and_run_cell_sizes_all_differ():
    seen = []

    def rnn_cell_step(x, h, weight_ih, weight_hh, bias_ih, bias_hh):
        seen.append({"batch": x.shape[0], "input_size": x.shape[1], "hidden_size": h.shape[1]})
        return torch.tanh(F.linear(x, weight_ih, bias_ih) + F.linear(h, weight_hh, bias_hh))

    _quiet(rnn_basics.check_rnn_cell_step, rnn_cell_step)
    assert seen
    for sizes in seen:
        _distinct(sizes)

    def run_cell(cell, inputs, h0):
        seen.append({"seq_len": inputs.shape[0], "batch": inputs.shape[1], "input_size": inputs.shape[2],
                     "hidden_size": h0.shape[1]})
        h, outs = h0, []
        for x_t in inputs:
            h = cell(x_t, h)
            outs.append(h)
        return torch.stack(outs), h

    _quiet(rnn_basics.check_run_cell, run_cell)
    _distinct(seen[-1])


@pytest.mark.parametrize("batch_first", [False, True])
def test_rnn_shapes_sizes_all_differ(batch_first):
    seen = []

    def rnn_shapes(seq_len, batch_size, input_size, hidden_size, num_layers, batch_first=False):
        seen.append(dict(seq_len=seq_len, batch_size=batch_size, input_size=input_size, hidden_size=hidden_size,
                         num_layers=num_layers))
        first = (batch_size, seq_len) if batch_first else (seq_len, batch_size)
        h = (num_layers, batch_size, hidden_size)
        return {"input": (*first, input_size), "h0": h, "output": (*first, hidden_size), "h_n": h}

    _quiet(rnn_basics.check_rnn_shapes, rnn_shapes, batch_first)
    _distinct(seen[0])


def test_last_time_step_sizes_all_differ():
    seen = []

    def last_time_step(output, batch_first=False):
        seq, batch = (output.shape[1], output.shape[0]) if batch_first else output.shape[:2]
        seen.append({"seq_len": seq, "batch": batch, "hidden_size": output.shape[2]})
        return output[:, -1] if batch_first else output[-1]

    _quiet(rnn_basics.check_last_time_step, last_time_step)
    assert len(seen) == 2
    for sizes in seen:
        _distinct({**sizes, "num_layers": 2, "input_size": 5})


def test_one_hot_sizes_differ():
    seen = []

    def one_hot(indices, num_classes):
        idx = torch.as_tensor(indices)
        seen.append({"len(indices)": len(idx), "num_classes": num_classes})
        return (idx[:, None] == torch.arange(num_classes)).float()

    _quiet(hello_ohlol.check_one_hot, one_hot)
    for sizes in seen:
        _distinct(sizes)


def test_model_checks_sizes_all_differ():
    seen = []

    class OneHotRNN(nn.Module):
        def __init__(self, input_size, hidden_size, num_class):
            super().__init__()
            self.sizes = {"input_size": input_size, "hidden_size": hidden_size, "num_class": num_class}
            self.rnn = nn.RNN(input_size, hidden_size)
            self.fc = nn.Linear(hidden_size, num_class)

        def forward(self, x):
            seen.append({**self.sizes, "seq_len": x.shape[0], "batch": x.shape[1]})
            return self.fc(self.rnn(x)[0]).reshape(-1, self.fc.out_features)

    _quiet(hello_ohlol.check_one_hot_rnn, OneHotRNN)
    assert seen
    for sizes in seen:
        if sizes["batch"] > 1:
            _distinct(sizes)

    class EmbeddingRNN(nn.Module):
        def __init__(self, num_class, embedding_size, hidden_size, num_layers):
            super().__init__()
            self.sizes = {"num_class": num_class, "embedding_size": embedding_size, "hidden_size": hidden_size,
                          "num_layers": num_layers}
            self.emb = nn.Embedding(num_class, embedding_size)
            self.rnn = nn.RNN(embedding_size, hidden_size, num_layers, batch_first=True)
            self.fc = nn.Linear(hidden_size, num_class)

        def forward(self, x):
            seen.append({**self.sizes, "batch": x.shape[0], "seq_len": x.shape[1]})
            return self.fc(self.rnn(self.emb(x))[0]).reshape(-1, self.fc.out_features)

    seen.clear()
    _quiet(hello_ohlol.check_embedding_rnn_shape, EmbeddingRNN)
    _quiet(hello_ohlol.check_embedding_rnn_structure, EmbeddingRNN)
    for sizes in seen:
        if sizes["batch"] > 1:
            _distinct(sizes)


# ----------------------------------------------------------------------------- one_hot from scratch


@pytest.mark.parametrize("body", [
    "return F.one_hot(torch.as_tensor(indices), num_classes).float()",
    "return getattr(F, 'one_' + 'hot')(torch.as_tensor(indices), num_classes).float()",
    "return torch._C._nn.one_hot(torch.as_tensor(indices), num_classes).float()",
])
def test_visible_one_hot_check_refuses_f_one_hot(body):
    namespace = {"torch": torch, "F": F}
    exec(f"def one_hot(indices, num_classes):\n    {body}\n", namespace)
    with pytest.raises(checks.CheckFailed, match="write it by hand: zeros, then set a 1 per row"):
        _quiet(hello_ohlol.check_one_hot, namespace["one_hot"])
    assert F.one_hot(torch.tensor([2]), 3).tolist() == [[0, 0, 1]]


@pytest.mark.parametrize("body", [
    "return torch.eye(num_classes)[torch.as_tensor(indices)]",
    "return torch.zeros(len(indices), num_classes).scatter_(1, torch.as_tensor(indices).view(-1, 1), 1.0)",
    "return (torch.as_tensor(indices)[:, None] == torch.arange(num_classes)).float()",
    "one_hot = torch.zeros(len(indices), num_classes)\n    one_hot[range(len(indices)), list(indices)] = 1\n"
    "    return one_hot",
])
def test_visible_one_hot_check_accepts_by_hand_answers(body):
    namespace = {"torch": torch, "F": F}
    exec(f"def one_hot(indices, num_classes):\n    {body}\n", namespace)
    _quiet(hello_ohlol.check_one_hot, namespace["one_hot"])


def test_one_hot_problem_diagnoses_without_a_reference():
    eye = torch.eye(4)
    assert hello_ohlol.one_hot_problem([1, 0, 3], 4, "list", eye[[1, 0, 3]]) is None
    assert "one column right" in hello_ohlol.one_hot_problem([1, 0, 3], 4, "list", eye[[2, 1, 0]])
    assert "transpose" in hello_ohlol.one_hot_problem([1, 0, 3], 4, "list", eye[[1, 0, 3]].T)
    assert "row 1" in hello_ohlol.one_hot_problem([1, 0, 3], 4, "list", eye[[1, 2, 3]])
