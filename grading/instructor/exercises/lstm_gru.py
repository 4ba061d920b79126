"""Hidden checks of the ``lstm_gru`` assignment: LSTMCellScratch (``lstm_cell``) and GRUCellScratch (``gru_cell``).

Each cell has four test cells: shapes, values, gradients, training. The values, gradients and
training cells start with the same *diagnosis* case: probes that force single gates open or
shut through their bias block, switch one input path off, or zero the state. When the cell is
wrong, the judge names the gate or term at fault in two ways:

* a **known bug** (gate blocks permuted, an activation changed, the cell memory dropped, the reset
  applied before the matmul, z and 1 - z swapped, the notes' shared weights, ...) is recognised
  exactly: the judge recomputes the probes with that bug and finds the same numbers;
* otherwise each probe that fails adds the property it checks ("forget gate: with f forced to 1
  and i to 0, c must carry over unchanged", ...), so even a cell with several bugs is located.

The diagnosis and every message live in the shipped :mod:`grading.student.cell_diagnosis`: a student's
Validate runs the same diagnosis (on its own fixed inputs) and names the same fault as the grade. What
stays here is what stays hidden: the grader's inputs (shapes and values drawn from the verifier's seed).

The probe runs where the student's code lives and returns plain data only; every reference,
including the retrained model's loss, is recomputed here with torch's own nn.LSTMCell / nn.GRUCell.
The probe never calls torch's cells (the verifier traps them).
"""

from __future__ import annotations

import random
from typing import Any

import torch
import torch.nn as nn
from torch.nn.modules.rnn import GRUCell as TorchGRUCell  # not torch.nn.GRUCell: a submission may rebind that name
from torch.nn.modules.rnn import LSTMCell as TorchLSTMCell

from grading.student.cell_diagnosis import (
    FORBIDDEN,
    GATES,
    LEAD,
    REASON,
    case_problem,
    diagnose,
    diagnosis_probes,
    parameter_problem,
    parameter_shapes,
    random_case,
    run_cell,
)
from grading.student.lstm_gru import CHARS, EMBEDDING_SIZE, train_cell, training_case, training_problem

from .base import Case, Exercise, ProbeError, pack, unpack

DIAG_BATCH, DIAG_SIZE = 4, 3  # input_size == hidden_size, so a weight shared by x and h does not crash


class CellExercise(Exercise):
    """Shared machinery of LSTMCellScratch and GRUCellScratch."""

    kind = ""
    torch_cell: type = nn.Module
    assignment = "lstm_gru"
    forbidden_names = FORBIDDEN
    forbidden_reason = REASON

    SHAPE_CASES = [(3, 5, 6, "float32"), (1, 4, 2, "float64"), (2, 3, 3, "float32")]
    VALUE_CASES = [(3, 5, 6, "float32"), (4, 2, 7, "float64"), (1, 6, 3, "float64"), (5, 4, 4, "float32")]
    GRAD_CASES = [(3, 5, 4, "float64"), (2, 3, 6, "float64"), (4, 2, 3, "float32")]

    @property
    def k(self) -> int:
        return len(GATES[self.kind])

    @property
    def lstm(self) -> bool:
        return self.kind == "lstm"

    # -- cases ------------------------------------------------------------------------------
    def cases(self, seed: int) -> list[Case]:
        gen = torch.Generator().manual_seed(seed)
        rng = random.Random(seed)
        t_shapes, t_values, t_grads, t_train = self.test_ids
        out = [Case(t_shapes, "parameters", {"input_size": 5, "hidden_size": 6})]
        extra = (rng.randint(1, 5), rng.randint(1, 7), rng.randint(1, 7), rng.choice(["float32", "float64"]))
        for shape in self.SHAPE_CASES + [extra]:
            out.append(Case(t_shapes, "forward", self._random_case(gen, *shape)))
        diagnosis = {"probes": pack(diagnosis_probes(self.kind, gen, DIAG_BATCH, DIAG_SIZE))}
        out.append(Case(t_values, "diagnosis", diagnosis))
        for shape in self.VALUE_CASES + [extra]:
            out.append(Case(t_values, "values", self._random_case(gen, *shape)))
        out.append(Case(t_grads, "diagnosis", diagnosis))
        for shape in self.GRAD_CASES:
            out.append(Case(t_grads, "gradients", self._random_case(gen, *shape, upstream=True)))
        out.append(Case(t_train, "diagnosis", diagnosis))
        for target in ("ohlol", "".join(rng.choice(CHARS) for _ in range(5))):
            out.append(Case(t_train, "training", self.training_case(target, rng.randrange(2**31))))
        return out

    def training_case(self, target: str, init_seed: int, embedding_size: int = EMBEDDING_SIZE) -> dict:
        return pack(training_case(self.kind, target, init_seed, embedding_size))

    def _random_case(self, gen, batch, input_size, hidden_size, dtype, upstream=False) -> dict:
        return pack(random_case(self.kind, gen, batch, input_size, hidden_size, getattr(torch, dtype), upstream))

    # -- probe (runs next to the student's code: plain data out, never torch's cells) ----------
    def probe(self, cls: Any, case: Case) -> Any:
        if case.label == "parameters":
            cell = cls(case.data["input_size"], case.data["hidden_size"])
            if not isinstance(cell, nn.Module):
                raise ProbeError(f"returned a {type(cell).__name__} instance: {self.name} must subclass nn.Module")
            return pack(parameter_shapes(cell))
        if case.label == "diagnosis":
            return {"outputs": [self._run(cls, p) for p in case.data["probes"]]}
        if case.label == "training":
            return pack(train_cell(cls, self.kind, unpack(case.data)))
        return self._run(cls, case.data)

    def _run(self, cls, data) -> dict:
        d = unpack(data)
        return pack(run_cell(cls, self.kind, d["params"], d["x"], d["h"], d["c"], d.get("up_h"), d.get("up_c")))

    # -- judge (the grader's process: genuine torch only) -------------------------------------
    def judge(self, case: Case, observed: Any) -> str | None:
        try:
            d = unpack(case.data)
            if case.label == "parameters":
                return parameter_problem(self.kind, d["input_size"], d["hidden_size"], observed)
            if case.label == "diagnosis":
                results = [unpack(r) for r in observed["outputs"]]
                return diagnose(self.kind, d["probes"], results, self._lead(case.test_id))
            if case.label == "training":
                return training_problem(self.kind, d, unpack(observed))
            return case_problem(self.kind, d["params"], d["x"], d["h"], d["c"], unpack(observed),
                                compare=case.label != "forward", up_h=d.get("up_h"), up_c=d.get("up_c"))
        except Exception as exc:  # noqa: BLE001 - unreadable data is a failure, never a crash of the grader
            return f"{self.name}: the check could not read the results ({type(exc).__name__}: {exc})."

    def _lead(self, test_id: str) -> str:
        leads = dict(zip(self.test_ids[1:], (LEAD["values"], LEAD["gradients"], LEAD["training"]), strict=True))
        return leads.get(test_id, "")


class LstmCell(CellExercise):
    grade_id = "lstm_cell"
    name = "LSTMCellScratch"
    notebook = "lstm"
    test_ids = ("test_lstm_shapes", "test_lstm_values", "test_lstm_gradients", "test_lstm_training")
    verifier_only = ("test_lstm_training",)
    kind = "lstm"
    torch_cell = TorchLSTMCell


class GruCell(CellExercise):
    grade_id = "gru_cell"
    name = "GRUCellScratch"
    notebook = "gru"
    test_ids = ("test_gru_shapes", "test_gru_values", "test_gru_gradients", "test_gru_training")
    verifier_only = ("test_gru_training",)
    kind = "gru"
    torch_cell = TorchGRUCell


EXERCISES = [LstmCell(), GruCell()]
