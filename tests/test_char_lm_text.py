"""The text parts of poems.ipynb (build_vocab, make_batches, perplexity, sample): the visible checks, the hidden
checks run in-process on the catalogue's answers, the course helpers and the calibration of the chi-square test.
No kernel runs here."""

from __future__ import annotations

import contextlib
import io
import math

import pytest
import torch

from grading.instructor.catalogue import answers_for
from grading.instructor.exercises import EXERCISES, KERNEL_SEED
from grading.instructor.exercises import char_lm_text as hidden
from grading.instructor.exercises.base import run_cases
from grading.student import char_lm_text as text
from grading.student.char_lm import UNKNOWN

GRADE_IDS = ("build_vocab", "make_batches", "perplexity", "sample")
VISIBLE = {"build_vocab": (text.check_build_vocab,), "make_batches": (text.check_make_batches,),
           "perplexity": (text.check_perplexity,),
           "sample": (text.check_sample_interface, text.check_sample_distribution)}
PREAMBLE = ("import math\nimport torch\nimport torch.nn as nn\nimport torch.nn.functional as F\n"
            "from grading.student.char_lm import UNKNOWN\n")


def _define(answer):
    namespace: dict = {}
    exec(PREAMBLE, namespace)
    exec(answer.source, namespace)
    return namespace[answer.exercise]


def _visible(check, fn) -> str | None:
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            check(fn)
    except AssertionError as exc:
        return str(exc)
    return None


ANSWERS = [a for g in GRADE_IDS for a in answers_for(g)]


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.exercise}-{a.key}")
def test_hidden_cases_of_two_seeds_give_the_catalogue_verdict(answer):
    """run_cases on the kernel's seed and another: correct answers pass, wrong ones fail their cells, named."""
    exercise = EXERCISES[answer.exercise]
    fn = _define(answer)
    for seed in (KERNEL_SEED, 12345):
        results = run_cases(exercise, fn, exercise.cases(seed))
        failed = {t for t, m in results.items() if m}
        assert failed == set(answer.fails), (answer.key, seed, results)
        for test_id in failed:
            assert answer.message in results[test_id], (answer.key, results[test_id])


@pytest.mark.parametrize("answer", ANSWERS, ids=lambda a: f"{a.exercise}-{a.key}")
def test_visible_checks_agree_with_the_catalogue(answer):
    """Validate: a correct answer passes every visible check; a wrong one fails the check of each cell it fails."""
    fn = _define(answer)
    for check in VISIBLE[answer.exercise]:
        cell = "test_" + check.__name__.removeprefix("check_")
        message = _visible(check, fn)
        if answer.correct or cell not in answer.fails:
            assert message is None, (answer.key, check.__name__, message)
        else:
            assert message and answer.message in message, (answer.key, check.__name__, message)


@pytest.mark.parametrize("grade_id", GRADE_IDS)
def test_the_stub_fails_every_visible_check(grade_id):
    def stub(*args, **kwargs):
        raise NotImplementedError()

    for check in VISIBLE[grade_id]:
        assert "not implemented yet" in _visible(check, stub)


def test_encode_maps_unknown_characters_to_zero():
    stoi = {UNKNOWN: 0, "月": 1, "光": 2}
    assert text.encode("月x光月", stoi).tolist() == [1, 0, 2, 1]
    assert text.encode("月x", stoi).dtype == torch.int64
    assert text.decode([1, 0, 2], [UNKNOWN, "月", "光"]) == "月\ufffd光"


def test_unigram_perplexity_is_add_one_smoothed_over_val_ids_after_the_first():
    # train counts: id 1 twice, id 2 once; V = 3 -> p = (1, 3, 2) / 6; validation positions 1.. are [1, 2]
    value = text.unigram_perplexity([1, 1, 2], [0, 1, 2], 3)
    assert value == pytest.approx(math.exp(-(math.log(3 / 6) + math.log(2 / 6)) / 2))


def test_chi_square_tail_matches_known_quantiles():
    assert text.chi_square_sf(11.0705, 5) == pytest.approx(0.05, rel=1e-4)
    assert text.chi_square_sf(9.4877, 4) == pytest.approx(0.05, rel=1e-4)
    assert text.chi_square([10, 10], [0.5, 0.5]) == 0
    assert text.chi_square([1, 0], [0.0, 1.0]) == math.inf


def test_make_batches_problem_names_the_offset():
    ids = list(range(100, 126))  # 26 distinct ids, batch 3, seq_len 4: n = 8, rows start at 0, 8, 16
    ref = hidden.reference_batches(torch.tensor(ids), 3, 4)
    shifted = [hidden.reference_batches(torch.tensor(ids[1:] + [999]), 3, 4)[i] for i in range(2)]
    assert text.make_batches_problem(ids, 3, 4, text.plain_batches(ref)) is None
    assert "start at position b * n" in text.make_batches_problem(ids, 3, 4, text.plain_batches(shifted))


def test_a_model_state_that_is_not_a_pair_is_reported():
    model = text.TableModel([[0.0, 1.0], [1.0, 0.0]])
    with pytest.raises(TypeError, match="LongTensor"):
        model(torch.zeros(1, 2), None)
    model(torch.zeros(1, 2, dtype=torch.long), "nonsense")
    assert model.calls[-1]["state"] == "a str"


def test_the_hidden_sample_checks_run_well_under_a_second():
    import time

    exercise = EXERCISES["sample"]
    fn = _define(next(a for a in answers_for("sample") if a.key == "reference"))
    started = time.perf_counter()
    results = run_cases(exercise, fn, exercise.cases(KERNEL_SEED))
    assert not any(results.values()), results
    assert time.perf_counter() - started < 1.0


def test_calibration_the_reference_passes_and_every_wrong_variant_fails_each_seed():
    """A smaller run of ``calibrate_sample`` (the notebook's figures come from 250 seeds): 100% / 0% per variant,
    with the threshold well clear of both sides."""
    rows = hidden.calibrate_sample(num_seeds=6)
    assert not hidden.sample_calibration_problems(rows), hidden.format_sample_table(rows)
    worst_reference = max(r["worst"] for r in rows if r["expected"] == "pass")
    best_wrong = min(r["best"] for r in rows if r["expected"] == "fail")
    assert worst_reference < text.CHI_SQUARE_THRESHOLD / 2 and best_wrong > 4 * text.CHI_SQUARE_THRESHOLD
    assert rows[0]["tail_probability"] < 1e-8
