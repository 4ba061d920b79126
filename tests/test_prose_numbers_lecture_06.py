"""Numbers quoted in the prose of lecture 06 (text generation), tied to what the code computes, and its
temperature explorer.

The baselines are recomputed here from the poems (``source/char_lm/tang300.txt``) with the course's own helpers,
independently of the notebook's code; the explorer is the notebook's own, built by running its cells.
"""

from __future__ import annotations

import math
import time
from collections import Counter

import nbformat
import pytest
from prose import REPO, assert_quoted, code_outputs

from grading.student.char_lm import load_poems, split_poems

NB06 = "notebooks/06_text_generation.ipynb"


@pytest.fixture(scope="module")
def texts() -> tuple[str, str]:
    return split_poems(load_poems(REPO / "source" / "char_lm" / "tang300.txt"))


def _unigram(train: str):
    counts = Counter(train)
    vocab_size = len(counts) + 1
    total = len(train) + vocab_size
    return vocab_size, lambda c: (counts.get(c, 0) + 1) / total


def test_06_fair_die_has_perplexity_6():
    assert_quoted(NB06, "Perplexity 6: six equally likely choices")
    assert "perplexity 6.0000" in code_outputs(NB06)


def test_06_poems_and_vocabulary(texts):
    train, val = texts
    poems = load_poems(REPO / "source" / "char_lm" / "tang300.txt")
    vocab_size, _ = _unigram(train)
    assert_quoted(NB06, f"{len(poems)} poems of 唐诗三百首", f"(`vocab_size` = {vocab_size:,})",
                  f"one long string of {len(train):,} characters", f"exactly `vocab_size`: {vocab_size:,} choices",
                  f"{len(train):,} training characters cannot cover {vocab_size:,}² ≈ "
                  f"{vocab_size ** 2 / 1e6:.1f} million possible pairs")
    assert f"{len(poems)} poems: {len(train):,} training characters, {len(val):,} validation characters" in (
        code_outputs(NB06))


def test_06_uniform_unigram_and_best_context_free_perplexities(texts):
    train, val = texts
    vocab_size, p = _unigram(train)
    unigram = math.exp(-sum(math.log(p(c)) for c in val) / len(val))
    q = [n / len(val) for n in Counter(val).values()]
    best = math.exp(-sum(x * math.log(x) for x in q))
    assert best < unigram < vocab_size
    assert_quoted(NB06, f"Counting alone brings {vocab_size:,} choices down to {unigram:.1f}",
                  f"cannot do better than {best:.1f} without context",
                  f"{unigram:.1f} for the unigram model on the validation poems")
    outputs = code_outputs(NB06)
    assert f"uniform model, perplexity on the validation poems: {vocab_size:,.1f}" in outputs
    assert f"unigram model, perplexity on the validation poems: {unigram:.1f}" in outputs
    assert f"perplexity {best:.1f}" in outputs


def test_06_mixed_bigram_perplexity(texts):
    train, val = texts
    _, p = _unigram(train)
    pair_counts, first_counts = Counter(zip(train, train[1:], strict=False)), Counter(train[:-1])
    pairs = list(zip(val, val[1:], strict=False))

    def log_prob(a, b, mix):
        bigram = pair_counts[a, b] / first_counts[a] if first_counts[a] else p(b)
        return math.log(mix * bigram + (1 - mix) * p(b))

    perplexity = math.exp(-sum(log_prob(a, b, 0.3) for a, b in pairs) / len(pairs))
    unigram = math.exp(-sum(math.log(p(c)) for c in val) / len(val))
    assert perplexity < unigram
    assert_quoted(NB06, f"At $\\lambda = 0.3$ the perplexity is {perplexity:.1f}, against {unigram:.1f} "
                        "for the unigram model")
    unseen = sum(pair_counts[a, b] == 0 for a, b in pairs)
    assert f"{unseen:,} of the {len(pairs):,} validation pairs never occur" in code_outputs(NB06)


def test_06_greedy_loop_is_the_most_frequent_followers(texts):
    train, _ = texts
    pair_counts = Counter(zip(train, train[1:], strict=False))

    def most_frequent_follower(a):
        followers = sorted((b, n) for (x, b), n in pair_counts.items() if x == a)
        return max(followers, key=lambda item: item[1])[0]  # the first in sorted order among ties, as argmax

    assert [most_frequent_follower(a) for a in "见，不"] == ["，", "不", "见"]
    assert_quoted(NB06, 'the most frequent follower of "见" is "，", of "，" is "不", and of "不" is "见"')
    assert "不见，不见，不见" in code_outputs(NB06)


def test_06_self_check_answers():
    n = (1001 - 1) // 4
    assert_quoted(NB06, f"Each stream has $(1001 - 1) // 4 = {n}$ characters, cut into $250 // 50 = {n // 50}$ windows",
                  f"$1001 - 4 \\times 250 = {1001 - 4 * n}$", "0.3 becomes 0.03", "$\\exp(-\\ln 0.25) = 4$")


def _notebook_namespace(monkeypatch) -> dict:
    """Run the lecture's cells up to its temperature explorer, in the notebook's folder (about 0.5 s)."""
    import matplotlib

    matplotlib.use("Agg")
    monkeypatch.chdir(REPO / "notebooks")
    markers = ("# Run this cell first", "def find_poems(", "def unigram_log_prob(", "def bigram_logits(",
               "def sample_poem(", "def poems_view(")
    cells = [c.source for c in nbformat.read(REPO / NB06, as_version=4).cells if c.cell_type == "code"]
    namespace: dict = {}
    for marker in markers:
        [source] = [s for s in cells if marker in s]
        exec(compile(source, f"{NB06}:{marker}", "exec"), namespace)
    return namespace


def test_06_temperature_explorer_resamples(monkeypatch, capsys):
    import ipywidgets

    namespace = _notebook_namespace(monkeypatch)
    capsys.readouterr()
    cells = [c.source for c in nbformat.read(REPO / NB06, as_version=4).cells if c.cell_type == "code"]
    [source] = [s for s in cells if "def poems_view(" in s]
    explorer = eval(compile(source.split("\n\n\n")[-1], NB06, "eval"), namespace)  # the cell's last expression
    assert isinstance(explorer, ipywidgets.VBox) and explorer.view.value.startswith("<pre")
    views = {}
    for temperature in (0.0, 0.5, 1.0, 2.0):
        start = time.perf_counter()
        explorer.controls["temperature"].value = temperature
        assert time.perf_counter() - start < 1.0
        views[temperature] = explorer.view.value
    assert len(set(views.values())) == 4
    assert "不见，不见，不见" in views[0.0]
    before = explorer.view.value
    explorer.controls["seed"].value = 7
    assert explorer.view.value != before
    explorer.controls["seed"].value = 0
    assert explorer.view.value == before, "the same temperature and seed re-sample the same poems"
    generator = namespace["torch"].Generator().manual_seed(0)
    assert namespace["sample_poem"]("春", 1.0, generator).startswith("春")
