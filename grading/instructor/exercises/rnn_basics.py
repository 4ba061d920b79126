"""Hidden checks of the ``rnn_basics`` assignment: rnn_cell_step, run_cell, rnn_shapes, last_time_step."""

from __future__ import annotations

import random
from typing import Any

import torch

from .base import Case, Exercise, ProbeError, is_packed_tensor, max_diff, pack, randn, shape_message, tolerance, unpack

FUSED_RNN = ("rnn_tanh_cell", "rnn_relu_cell", "RNNCell", "RNN", "_VF", "RNNCellBase", "RNNBase", "rnn_tanh")
FUSED_REASON = (
    "this exercise asks for the equation written by hand (matrix products, biases, tanh); "
    "torch's fused RNN cell does the work for you, so it earns no points."
)


def _activation_hint(out: torch.Tensor, expected: torch.Tensor) -> str | None:
    """Name the activation when the output is tanh's argument passed through another one."""
    pre = torch.atanh(expected.clamp(-1 + 1e-12, 1 - 1e-12))
    if max_diff(out, pre) <= 1e-6:
        return "h' is missing the activation: apply torch.tanh to the sum (tanh keeps h in [-1, 1])."
    for name, fn in (("sigmoid", torch.sigmoid), ("relu", torch.relu)):
        if max_diff(out, fn(pre)) <= 1e-6:
            return f"h' uses {name}; the RNN cell uses tanh: h' = tanh(x W_ih^T + b_ih + h W_hh^T + b_hh)."
    return None


class RnnCellStep(Exercise):
    grade_id = "rnn_cell_step"
    name = "rnn_cell_step"
    assignment = "rnn_basics"
    notebook = "rnn_cell"
    test_ids = ("test_rnn_cell_step",)
    forbidden_names = FUSED_RNN
    forbidden_reason = FUSED_REASON

    SHAPES = [(3, 5, 4, "float32"), (1, 2, 6, "float64"), (4, 4, 4, "float32"), (2, 7, 3, "float64")]

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        out = []
        batch, inp, hid, _ = rng.choice(self.SHAPES[:2])
        for label in ("bias_only", "input_term", "hidden_term"):
            out.append(self._case(gen, label, batch, inp, hid, "float64"))
        for batch, inp, hid, dtype in self.SHAPES:
            out.append(self._case(gen, "values", batch, inp, hid, dtype))
        out.append(self._case(gen, "gradients", 3, 5, 4, "float64"))
        return out

    def _case(self, gen, label, batch, inp, hid, dtype) -> Case:
        dt = getattr(torch, dtype)
        tensors = {
            "x": randn(gen, batch, inp, dtype=dt),
            "h": randn(gen, batch, hid, dtype=dt),
            "weight_ih": randn(gen, hid, inp, dtype=dt) * 0.5,
            "weight_hh": randn(gen, hid, hid, dtype=dt) * 0.5,
            "bias_ih": randn(gen, hid, dtype=dt) * 0.5,
            "bias_hh": randn(gen, hid, dtype=dt) * 0.5,
        }
        if label == "bias_only":
            tensors["weight_ih"].zero_()
            tensors["weight_hh"].zero_()
        elif label == "input_term":
            for k in ("h", "bias_ih", "bias_hh"):
                tensors[k].zero_()
        elif label == "hidden_term":
            for k in ("x", "bias_ih", "bias_hh"):
                tensors[k].zero_()
        data = {k: pack(v) for k, v in tensors.items()}
        data["upstream"] = pack(randn(gen, batch, hid, dtype=dt))
        return Case(self.test_ids[0], label, data)

    ARGS = ("x", "h", "weight_ih", "weight_hh", "bias_ih", "bias_hh")

    def probe(self, fn: Any, case: Case) -> Any:
        args = [unpack(case.data[k]) for k in self.ARGS]
        if case.label == "gradients":
            for a in args:
                a.requires_grad_(True)
        out = fn(*args)
        if not isinstance(out, torch.Tensor):
            raise ProbeError(f"returned a {type(out).__name__}; "
                             "it must return a torch.Tensor (the new hidden state h')")
        if case.label != "gradients":
            return {"out": pack(out)}
        if not out.requires_grad:
            return {"out": pack(out), "grads": None}
        (out * unpack(case.data["upstream"])).sum().backward()
        return {"out": pack(out), "grads": [pack(a.grad) if a.grad is not None else None for a in args]}

    def reference(self, case: Case,
                  grad: bool = False) -> tuple[torch.Tensor, list[torch.Tensor | None] | None]:
        args = [unpack(case.data[k]) for k in self.ARGS]
        if grad:
            for a in args:
                a.requires_grad_(True)
        out = torch.tanh(args[0] @ args[2].T + args[4] + args[1] @ args[3].T + args[5])
        if not grad:
            return out, None
        (out * unpack(case.data["upstream"])).sum().backward()
        return out, [a.grad for a in args]

    def judge(self, case: Case, observed: Any) -> str | None:
        expected, ref_grads = self.reference(case, grad=case.label == "gradients")
        x = case.data["x"]
        batch, hidden = expected.shape
        if not is_packed_tensor(observed.get("out")):
            return "rnn_cell_step must return a torch.Tensor."
        out = unpack(observed["out"])
        if observed["out"]["dtype"] != x["dtype"]:
            return (f"rnn_cell_step returned dtype {observed['out']['dtype']} for {x['dtype']} inputs: "
                    "keep the inputs' dtype (no torch.tensor(...) or .float() inside).")
        if tuple(out.shape) != (batch, hidden):
            return shape_message("h'", list(out.shape), (batch, hidden), ("batch", "hidden_size"),
                                 "x @ weight_ih.T is (batch, hidden_size): "
                                 "weight_ih is (hidden_size, input_size), so transpose it.")
        diff = max_diff(out, expected)
        if diff > tolerance(x["dtype"]):
            hint = _activation_hint(out, expected)
            if hint:
                return hint
            return {
                "bias_only": f"With zero weights h' must be tanh(bias_ih + bias_hh); yours differs by {diff:.3g}. "
                             "Add both biases and apply tanh.",
                "input_term": f"With h = 0 and zero biases h' must be tanh(x @ weight_ih.T); "
                              f"yours differs by {diff:.3g}. Check the input term.",
                "hidden_term": f"With x = 0 and zero biases h' must be tanh(h @ weight_hh.T); "
                               f"yours differs by {diff:.3g}. Check the hidden term (weight_hh, not weight_ih).",
            }.get(case.label, f"h' differs from torch.nn.RNNCell with the same weights by {diff:.3g} "
                              f"(batch={batch}, hidden_size={hidden}, {x['dtype']}).")
        if case.label == "gradients":
            grads = observed.get("grads")
            if grads is None:
                return ("h' does not require grad: the result must stay connected to the inputs "
                        "(no .detach(), .data, .item() or torch.tensor(...)).")
            for name, got, want in zip(self.ARGS, grads, ref_grads, strict=False):
                if got is None or max_diff(unpack(got), want) > 1e-8:
                    return (f"The gradient with respect to {name} is wrong: "
                            "h' must be computed with differentiable torch operations only.")
        return None


class RunCell(Exercise):
    grade_id = "run_cell"
    name = "run_cell"
    assignment = "rnn_basics"
    notebook = "rnn_cell"
    test_ids = ("test_run_cell",)

    SHAPES = [(4, 2, 3, 5, "float32"), (1, 3, 2, 2, "float64"), (6, 1, 4, 3, "float64"), (5, 4, 3, 6, "float32")]

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        out = []
        for seq, batch, inp, hid, dtype in self.SHAPES:
            dt = getattr(torch, dtype)
            data = {
                "inputs": pack(randn(gen, seq, batch, inp, dtype=dt)),
                "h0": pack(randn(gen, batch, hid, dtype=dt)),
                "weight_ih": pack(randn(gen, hid, inp, dtype=dt) * 0.5),
                "weight_hh": pack(randn(gen, hid, hid, dtype=dt) * 0.5),
                "bias": pack(randn(gen, hid, dtype=dt) * 0.5),
            }
            out.append(Case(self.test_ids[0], f"seq_len={seq}, batch={batch}", data))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        w_ih, w_hh, bias = (unpack(case.data[k]) for k in ("weight_ih", "weight_hh", "bias"))
        seen = []

        def cell(x_t, h):
            seen.append(pack(h) if isinstance(h, torch.Tensor) else None)
            return torch.tanh(x_t @ w_ih.T + h @ w_hh.T + bias)

        result = fn(cell, unpack(case.data["inputs"]), unpack(case.data["h0"]))
        if not isinstance(result, (tuple, list)) or len(result) != 2:
            raise ProbeError(f"must return a pair (outputs, h_n), got {type(result).__name__}")
        outputs, h_n = result
        if isinstance(outputs, (list, tuple)):
            raise ProbeError("returned outputs as a Python list: "
                             "stack the per-step hidden states with torch.stack(..., dim=0)")
        return {"outputs": pack(outputs), "h_n": pack(h_n), "seen": seen}

    def judge(self, case: Case, observed: Any) -> str | None:
        inputs, h0 = unpack(case.data["inputs"]), unpack(case.data["h0"])
        w_ih, w_hh, bias = (unpack(case.data[k]) for k in ("weight_ih", "weight_hh", "bias"))
        rnn = torch.nn.RNN(w_ih.shape[1], w_ih.shape[0]).to(inputs.dtype)
        with torch.no_grad():
            rnn.weight_ih_l0.copy_(w_ih)
            rnn.weight_hh_l0.copy_(w_hh)
            rnn.bias_ih_l0.copy_(bias)
            rnn.bias_hh_l0.zero_()
            expected, h_last = rnn(inputs, h0.unsqueeze(0))
        seq, batch, hidden = expected.shape
        tol = tolerance(case.data["inputs"]["dtype"])
        seen = observed.get("seen") or []
        if len(seen) != seq:
            return (f"run_cell called the cell {len(seen)} times for seq_len={seq}: "
                    "call it once per time step (for x_t in inputs).")
        previous = [h0] + [expected[t] for t in range(seq - 1)]
        for t, (got, want) in enumerate(zip(seen, previous, strict=True)):
            if got is None or max_diff(unpack(got), want) > tol:
                if t == 0:
                    return "The first step must receive h0 as its hidden state."
                if max_diff(unpack(got), h0) <= tol:
                    return (f"Step {t} received h0 again: carry the hidden state over (h = cell(x_t, h)), "
                            "don't reset it every step.")
                return f"Step {t} received the wrong hidden state: pass the h returned by step {t - 1}."
        if not is_packed_tensor(observed.get("outputs")):
            return "outputs must be a torch.Tensor of shape (seq_len, batch, hidden_size)."
        outputs = unpack(observed["outputs"])
        if tuple(outputs.shape) != (seq, batch, hidden):
            return shape_message("outputs", list(outputs.shape), (seq, batch, hidden),
                                 ("seq_len", "batch", "hidden_size"),
                                 "Stack one hidden state per time step along a new first dimension.")
        if max_diff(outputs, expected) > tol:
            if max_diff(outputs[1:], expected[:-1]) <= tol:
                return "outputs[t] must be the hidden state AFTER step t: you stored h before calling the cell."
            return "outputs differ from nn.RNN with the same weights: outputs[t] is the hidden state after step t."
        if not is_packed_tensor(observed.get("h_n")):
            return "h_n must be a torch.Tensor of shape (batch, hidden_size)."
        h_n = unpack(observed["h_n"])
        if tuple(h_n.shape) != (batch, hidden):
            return shape_message("h_n", list(h_n.shape), (batch, hidden), ("batch", "hidden_size"),
                                 "For a single cell h_n is the last hidden state, without a num_layers dimension.")
        if max_diff(h_n, h_last[0]) > tol:
            return "h_n must be the hidden state after the last step (it equals outputs[-1])."
        return None


class RnnShapes(Exercise):
    grade_id = "rnn_shapes"
    name = "rnn_shapes"
    assignment = "rnn_basics"
    notebook = "nn_rnn"
    test_ids = ("test_rnn_shapes", "test_rnn_shapes_batch_first")

    KEYS = ("input", "h0", "output", "h_n")
    DIMS = {
        False: {"input": ("seq_len", "batch", "input_size"), "h0": ("num_layers", "batch", "hidden_size"),
                "output": ("seq_len", "batch", "hidden_size"), "h_n": ("num_layers", "batch", "hidden_size")},
        True: {"input": ("batch", "seq_len", "input_size"), "h0": ("num_layers", "batch", "hidden_size"),
               "output": ("batch", "seq_len", "hidden_size"), "h_n": ("num_layers", "batch", "hidden_size")},
    }

    def cases(self, seed: int) -> list[Case]:
        rng = random.Random(seed)
        out = []
        for test_id, batch_first in zip(self.test_ids, (False, True), strict=True):
            combos = [(3, 1, 4, 2, 1), (5, 2, 3, 7, 2)]
            combos += [tuple(rng.randint(1, 9) for _ in range(4)) + (rng.randint(1, 4),) for _ in range(3)]
            for seq, batch, inp, hid, layers in combos:
                args = {"seq_len": seq, "batch_size": batch, "input_size": inp, "hidden_size": hid,
                        "num_layers": layers, "batch_first": batch_first}
                out.append(Case(test_id, f"{args}", args))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        result = fn(**case.data)
        if not isinstance(result, dict):
            raise ProbeError(f"must return a dict with keys {list(self.KEYS)}, got {type(result).__name__}")
        return {str(k): [int(d) for d in v] if isinstance(v, (tuple, list, torch.Size)) else repr(v)
                for k, v in result.items()}

    def judge(self, case: Case, observed: Any) -> str | None:
        a = case.data
        rnn = torch.nn.RNN(a["input_size"], a["hidden_size"], a["num_layers"], batch_first=a["batch_first"])
        x_shape = ((a["batch_size"], a["seq_len"], a["input_size"]) if a["batch_first"]
                   else (a["seq_len"], a["batch_size"], a["input_size"]))
        h0 = torch.zeros(a["num_layers"], a["batch_size"], a["hidden_size"])
        with torch.no_grad():
            output, h_n = rnn(torch.zeros(x_shape), h0)
        expected = {"input": x_shape, "h0": tuple(h0.shape), "output": tuple(output.shape), "h_n": tuple(h_n.shape)}
        missing = [k for k in self.KEYS if k not in observed]
        if missing:
            return f"rnn_shapes must return a dict with the keys {list(self.KEYS)}; missing {missing}."
        args = ", ".join(f"{k}={v}" for k, v in a.items())
        for key in self.KEYS:
            got = observed[key]
            if not isinstance(got, list):
                return f"rnn_shapes(...)[{key!r}] must be a tuple of ints, got {got}."
            if tuple(got) != expected[key]:
                why = ""
                if key in ("h0", "h_n") and a["batch_first"]:
                    why = "batch_first only changes input and output: h0 and h_n stay (num_layers, batch, hidden_size)."
                elif key in ("input", "output") and a["batch_first"]:
                    why = "With batch_first=True the batch dimension comes first: (batch, seq_len, ...)."
                elif key in ("h0", "h_n"):
                    why = "There is one hidden state per layer: the first dimension is num_layers."
                elif key == "output":
                    why = "output holds the top layer's hidden state at every time step."
                return f"For {args}: {shape_message(key, got, expected[key], self.DIMS[a['batch_first']][key], why)}"
        return None


class LastTimeStep(Exercise):
    grade_id = "last_time_step"
    name = "last_time_step"
    assignment = "rnn_basics"
    notebook = "nn_rnn"
    test_ids = ("test_last_time_step",)

    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        out = []
        for seq, batch, hid, batch_first in [(4, 3, 5, False), (4, 3, 5, True), (2, 6, 3, True), (7, 1, 2, False)]:
            shape = (batch, seq, hid) if batch_first else (seq, batch, hid)
            data = {"output": pack(randn(gen, *shape, dtype=torch.float32)), "batch_first": batch_first}
            out.append(Case(self.test_ids[0], f"batch_first={batch_first}", data))
        return out

    def probe(self, fn: Any, case: Case) -> Any:
        return {"last": pack(fn(unpack(case.data["output"]), batch_first=case.data["batch_first"]))}

    def judge(self, case: Case, observed: Any) -> str | None:
        output = unpack(case.data["output"])
        batch_first = case.data["batch_first"]
        expected = output[:, -1] if batch_first else output[-1]
        got = observed.get("last")
        if not is_packed_tensor(got):
            return "last_time_step must return a torch.Tensor of shape (batch, hidden_size)."
        got = unpack(got)
        if batch_first and max_diff(got, output[-1]) == 0:
            return ("With batch_first=True, output[-1] is the last sequence of the batch, not the last time step: "
                    "use output[:, -1].")
        if tuple(got.shape) != tuple(expected.shape):
            return shape_message("last_time_step(output)", list(got.shape), tuple(expected.shape),
                                 ("batch", "hidden_size"),
                                 f"with batch_first={batch_first} the time dimension is dim {1 if batch_first else 0}.")
        if max_diff(got, expected) > 0:
            if batch_first and max_diff(got, output[-1]) == 0:
                return ("With batch_first=True, output[-1] is the last sequence of the batch, not the last time step: "
                        "use output[:, -1].")
            if not batch_first and got.shape == output[:, -1].shape and max_diff(got, output[:, -1]) == 0:
                return "With batch_first=False the time dimension is dim 0: use output[-1]."
            return f"last_time_step must return the output at the last time step (batch_first={batch_first})."
        return None


EXERCISES = [RnnCellStep(), RunCell(), RnnShapes(), LastTimeStep()]
