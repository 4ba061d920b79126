"""The capstone's model parts and its data: CharLM and train_tbptt's checks read hostile data safely, the grader's
copy of the poems is the one every check reads, and the course's sizes train in the notebook's budget.

The catalogue's verdicts (tests/test_catalogue.py) and Validate's messages (tests/test_visible_checks.py) are tested
with every other exercise's; the calibration is ``python -m grading calibrate``.
"""

from __future__ import annotations

import base64
import math

import pytest
import torch

from grading.instructor.exercises import EXERCISES
from grading.instructor.exercises.char_lm_model import (
    MAX_WEIGHTS,
    corpus,
    from_bytes,
    to_bytes,
    windows,
)
from grading.instructor.exercises.data import data_files, data_folder, find, write_data
from grading.student.char_lm import five_or_seven, load_poems, split_poems, unigram_perplexity

REFERENCE = EXERCISES["char_lm"]


def test_the_split_is_by_poem_and_every_tenth_poem_validates():
    poems = load_poems()
    train, val = split_poems(poems)
    assert len(poems) == 313
    assert val.count("\n\n") == 31 and train.count("\n\n") == 282
    assert poems[9] in val and poems[9] not in train and poems[0] in train


def test_the_unigram_baseline_is_what_a_context_free_model_can_learn():
    data = corpus()
    assert data["vocab_size"] == 2414
    assert data["baseline"] == pytest.approx(590.4, abs=0.1)
    assert unigram_perplexity([1, 1, 2], [0, 1, 2], 3) == pytest.approx(math.exp(-(math.log(3 / 6) + math.log(2 / 6))
                                                                                    / 2))


def test_the_grader_windows_are_the_contract_s_sequential_partitioning():
    ids = torch.arange(23)
    inputs, targets = windows(ids, 2, 3)
    assert inputs.shape == (3, 2, 3) and torch.equal(targets, inputs + 1)
    assert torch.equal(inputs[1, 0], torch.tensor([3, 4, 5])) and torch.equal(inputs[0, 1], torch.tensor([11, 12, 13]))


def test_trained_weights_travel_as_bytes_and_hostile_ones_are_refused():
    t = torch.randn(3, 4)
    assert torch.equal(from_bytes(to_bytes(t)), t.double())
    raw = base64.b64encode(b"\0" * 8).decode()
    for hostile in ({"b64": raw, "shape": [3]}, {"b64": raw, "shape": [MAX_WEIGHTS + 1]}, {"b64": 5, "shape": [2]},
                    {"b64": raw, "shape": [-2, -1]}, {"b64": "!!", "shape": [2]}, [1, 2], {"shape": [2]},
                    {"b64": raw, "shape": [1, 1, 1, 1, 2]}):
        with pytest.raises(ValueError):
            from_bytes(hostile)


def test_a_training_result_the_check_cannot_read_fails_and_never_crashes_the_grader():
    case = next(c for c in REFERENCE.cases(7) if c.label == "training")
    model = {"layers": {"Embedding": [{"num_embeddings": 2414, "embedding_dim": 32}],
                        "LSTM": [{"input_size": 32, "hidden_size": 128, "num_layers": 1, "batch_first": True,
                                  "bidirectional": False, "proj_size": 0, "bias": True}],
                        "Linear": [{"in_features": 128, "out_features": 2414, "bias": True}]}, "extra": []}
    for observed in ({"model": model}, {"model": model, "weights": "x"}, {"model": model, "weights": {"LSTM": {}}},
                     {"model": model, "own_loss": "nan", "weights": {}}, None, []):
        message = REFERENCE.judge(case, observed)
        assert message and "CharLM" in message


def test_forged_weights_cannot_claim_a_loss_their_model_does_not_give():
    """The probe reports the model's own validation loss; the judge recomputes it from the weights and refuses a
    report that disagrees (a submission that trained one model and reports another's loss)."""
    case = next(c for c in REFERENCE.cases(3) if c.label == "training")
    sizes = case.data["sizes"]
    from grading.instructor.exercises.char_lm_model import describe, reference_model

    layers = reference_model(sizes)
    weights = {label: {k: to_bytes(v) for k, v in m.state_dict().items()} for label, m in layers.items()}

    class Holder(torch.nn.Module):
        def __init__(self):
            super().__init__()
            self.emb, self.lstm, self.head = layers["Embedding"], layers["LSTM"], layers["Linear"]

    observed = {"model": describe(Holder()), "weights": weights, "own_loss": 1.0, "probabilities": False}
    assert "another validation loss" in REFERENCE.judge(case, observed)


def test_every_graded_kernel_and_the_verifier_read_the_course_s_copy(tmp_path):
    release = tmp_path / "release"
    release.mkdir()
    poems = ["床前明月光", "疑是地上霜", "举头望明月", "低头思故乡", "春眠不觉晓", "处处闻啼鸟", "夜来风雨声",
             "花落知多少", "白日依山尽", "黄河入海流"]
    (release / "tang300.txt").write_text("\n\n".join(poems) + "\n", encoding="utf-8")
    (release / "poems.ipynb").write_text("{}")
    (release / "figure.svg").write_text("<svg/>")
    files = data_files(release)
    assert list(files) == ["tang300.txt"]
    job = tmp_path / "job"
    write_data(files, job)
    assert (job / "tang300.txt").read_bytes() == files["tang300.txt"]
    assert not (job / "tang300.txt").stat().st_mode & 0o222
    for bad in ("../x.txt", ".hidden.txt", "a/b.txt"):
        with pytest.raises(ValueError):
            write_data({bad: b""}, tmp_path / "other")
    with data_folder(job):
        assert find("char_lm", "tang300.txt") == job / "tang300.txt"
        assert corpus()["vocab_size"] == len(set("".join(poems[:9]) + "\n")) + 1  # the grader's copy, not the repo's
    assert find("char_lm", "tang300.txt") != job / "tang300.txt"


def test_lines_of_five_or_seven_characters_are_counted_between_punctuation():
    assert five_or_seven("白日依山尽，黄河入海流。") == 1.0
    assert five_or_seven("白日依山，黄河入海流。\n欲穷千里目更上一层楼。") == pytest.approx(1 / 3)
    assert five_or_seven("") == 0.0


@pytest.mark.slow
def test_a_submitted_data_file_is_ignored_and_the_kernel_reads_the_course_s(tmp_path):
    """A student who hands in a tang300.txt of their own (one short poem: an easy text to fit) changes nothing: the
    grader puts the course's copy beside the notebook, and the solved notebook keeps full marks."""
    import json

    from conftest import gradebook_scores, grading, new_course, source_nb, submit

    course = new_course(tmp_path / "course", ["char_lm"])
    folder = submit(course, "planted", "char_lm", {"poems": source_nb("char_lm", "poems")})
    (folder / "tang300.txt").write_text("白日依山尽\n", encoding="utf-8")
    grading("grade", "char_lm", root=course, timeout=900)
    nb = json.loads((course / "autograded" / "planted" / "char_lm" / "poems.ipynb").read_text())
    printed = "".join("".join(o.get("text", "")) for c in nb["cells"] if c["cell_type"] == "code"
                      for o in c.get("outputs", []))
    assert "313 poems" in printed
    scores = gradebook_scores(course, "char_lm", "poems")["planted"]
    assert scores and all(score > 0 for score in scores.values()), scores
