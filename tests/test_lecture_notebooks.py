"""The lecture notebooks (``notebooks/*.ipynb``) and their explorers (``grading/student/widgets.py``).

(a) every notebook passes strict nbval against its committed outputs;
(b) every notebook is committed executed, top to bottom, without errors, timestamps or stale widget state;
(c) every notebook has learning goals, a setup cell, a course figure and a glossary,
    and no answer to a graded exercise;
(d) the explorers' pure functions are right, and every explorer reacts to its controls.
"""

from __future__ import annotations

import ast
import json
import math
import os
import re
import subprocess
import sys
import time
import xml.etree.ElementTree as ET
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import nbformat
import pytest
import torch

from grading.instructor.exercises import EXERCISES
from grading.instructor.lectures import (
    VOLATILE_CELL_METADATA,
    WIDGET_STATE,
    clean,
    displayed_models,
    reachable_models,
    widget_state_bytes,
)
from grading.student import widgets as W

ROOT = Path(__file__).resolve().parents[1]
NOTEBOOK_DIR = ROOT / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("[0-9][0-9]_*.ipynb"))
SANITIZE = NOTEBOOK_DIR / "nbval_sanitize.cfg"
IDS = [nb.stem for nb in NOTEBOOKS]
MAX_WIDGET_STATE_BYTES = 32_000  # an explorer's saved view (sliders, a few kB of HTML), not its history

# The function or class each graded exercise defines: no lecture may define one, whatever its kind.
GRADED_NAMES = frozenset(exercise.name for exercise in EXERCISES.values())
GLOSSARY_TERMS = ("循环神经网络", "隐藏层", "嵌入层", "遗忘门", "输入门", "输出门",
                  "独热向量", "权重共享", "梯度消失", "序列")


def _read(path: Path) -> nbformat.NotebookNode:
    return nbformat.read(path, as_version=4)


def _code_cells(nb):
    return [c for c in nb.cells if c.cell_type == "code"]


def _markdown(nb) -> str:
    return "\n\n".join(c.source for c in nb.cells if c.cell_type == "markdown")


def test_there_are_six_lecture_notebooks():
    assert [nb.name for nb in NOTEBOOKS] == [
        "01_rnn_basics.ipynb",
        "02_nn_rnn_batch_first.ipynb",
        "03_hello_ohlol.ipynb",
        "04_embedding.ipynb",
        "05_lstm_gru.ipynb",
        "06_text_generation.ipynb",
    ]


# --------------------------------------------------------------------------- (a) nbval


def _run_nbval(notebook: Path) -> tuple[subprocess.CompletedProcess, float]:
    env = dict(os.environ, OMP_NUM_THREADS="1", PYTEST_ADDOPTS="", PYTHONDONTWRITEBYTECODE="1")
    cmd = [sys.executable, "-m", "pytest", "--nbval", str(notebook.relative_to(ROOT)),
           "--nbval-sanitize-with", str(SANITIZE.relative_to(ROOT)), "--nbval-current-env",
           "-p", "no:cacheprovider", "--noconftest", "-o", "addopts=", "-q"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    return proc, time.perf_counter() - start


@pytest.fixture(scope="module")
def nbval_runs():
    """Run strict nbval on every notebook, two at a time (one thread each); results by stem."""
    # Matplotlib prints a one-time "building the font cache" warning to stderr, which nbval
    # would report as an unexpected output: build the cache first.
    subprocess.run([sys.executable, "-c", "import matplotlib.pyplot"], check=True, capture_output=True)
    with ThreadPoolExecutor(max_workers=2) as pool:
        results = dict(zip(IDS, pool.map(_run_nbval, NOTEBOOKS), strict=True))
    return results


@pytest.mark.slow
@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_passes_strict_nbval(notebook, nbval_runs):
    proc, seconds = nbval_runs[notebook.stem]
    assert proc.returncode == 0, f"nbval failed on {notebook.name}:\n{proc.stdout[-6000:]}\n{proc.stderr[-2000:]}"
    assert " passed" in proc.stdout and "skipped" not in proc.stdout, proc.stdout[-2000:]
    # Generous: the notebooks take well under 20 s alone; this only catches a runaway cell.
    assert seconds < 180, f"{notebook.name} took {seconds:.0f} s under nbval"


def test_sanitizer_file_is_valid():
    text = SANITIZE.read_text(encoding="utf-8")
    pairs = re.findall(r"^regex: (.*)$\n^replace: (.*)$", text, flags=re.MULTILINE)
    assert pairs, "nbval reads 'regex: ...' / 'replace: ...' line pairs"
    for regex, _ in pairs:
        re.compile(regex)
    assert re.sub(pairs[0][0], pairs[0][1], "<object at 0x7f3a2c1b9d90>") == "<object at 0xADDRESS>"


# --------------------------------------------------------------------------- (b) committed outputs


def _should_produce_output(source: str) -> bool:
    """A cell that prints or shows a plot (outside function bodies), builds an explorer
    (``W.*()``) or ends on a bare value such as ``h0`` or ``x.shape`` must have outputs."""
    tree = ast.parse(source)
    top_level = [stmt for stmt in tree.body
                 if not isinstance(stmt, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    for node in (n for stmt in top_level for n in ast.walk(stmt)):
        if isinstance(node, ast.Call):
            func = node.func
            if getattr(func, "id", None) in ("print", "display") or getattr(func, "attr", None) == "show":
                return True
    if not tree.body or source.rstrip().endswith(";") or not isinstance(tree.body[-1], ast.Expr):
        return False
    value = tree.body[-1].value
    if not isinstance(value, ast.Call):
        return True
    return isinstance(value.func, ast.Attribute) and getattr(value.func.value, "id", None) == "W"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_is_committed_executed(notebook):
    nb = _read(notebook)
    counts = [cell.execution_count for cell in _code_cells(nb)]
    assert all(isinstance(n, int) for n in counts), f"{notebook.name}: unexecuted code cells; execute it in place"
    assert counts == list(range(1, len(counts) + 1)), (
        f"{notebook.name}: execution counts {counts} are not 1..n: run it top to bottom in a fresh kernel")
    for cell in _code_cells(nb):
        assert not any(out.output_type == "error" for out in cell.outputs), f"{notebook.name}: error in\n{cell.source}"
        if _should_produce_output(cell.source):
            assert cell.outputs, f"{notebook.name}: this cell should show output but has none:\n{cell.source}"
        for out in cell.outputs:
            if out.output_type == "stream":
                assert out.name == "stdout", f"{notebook.name}: stderr output in\n{cell.source}\n{out.text}"


def test_committed_notebooks_stay_small():
    total = sum(f.stat().st_size for f in NOTEBOOK_DIR.rglob("*") if f.is_file())
    assert total < 1.5e6, f"notebooks/ holds {total / 1e6:.2f} MB"
    for notebook in NOTEBOOKS:
        for cell in _code_cells(_read(notebook)):
            for out in cell.outputs:
                png = out.get("data", {}).get("image/png", "")
                assert len(png) < 120_000, (
                    f"{notebook.name}: a {len(png) // 1000} kB image; lower the figure size or dpi")


# --------------------------------------------------------------------------- (c) structure


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_opens_with_learning_goals_and_setup(notebook):
    nb = _read(notebook)
    first = nb.cells[0]
    assert first.cell_type == "markdown" and "Learning goals" in first.source
    bullets = [line for line in first.source.splitlines() if line.startswith("- ")]
    assert 3 <= len(bullets) <= 5, f"{notebook.name}: {len(bullets)} learning goals, want 3-5"
    setup = _code_cells(nb)[0]
    assert setup.source.startswith("# Run this cell first")
    for needed in ("import torch", "torch.manual_seed(", "torch.set_num_threads(1)"):
        assert needed in setup.source, f"{notebook.name}: setup cell lacks {needed}"
    assert any(c.cell_type == "markdown" and "Run this cell first" in c.source for c in nb.cells[:3])


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_shows_course_figures(notebook):
    figures = re.findall(r"!\[[^\]]+\]\((figures/[^)\s]+\.svg)\)", _markdown(_read(notebook)))
    assert figures, f"{notebook.name}: no ![alt](figures/*.svg) figure"
    for figure in figures:
        path = NOTEBOOK_DIR / figure
        assert path.is_file(), f"{notebook.name}: missing {figure}"
        root = ET.parse(path).getroot()
        assert root.tag == "{http://www.w3.org/2000/svg}svg", f"{figure} is not an SVG"
        assert root.get("viewBox") and path.stat().st_size < 40_000


def test_every_figure_is_used():
    used = set()
    for notebook in NOTEBOOKS:
        used |= set(re.findall(r"\((figures/[^)\s]+\.svg)\)", _markdown(_read(notebook))))
    on_disk = {f"figures/{p.name}" for p in (NOTEBOOK_DIR / "figures").glob("*.svg")}
    assert on_disk <= used, f"unused figures: {sorted(on_disk - used)}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_ends_with_a_glossary(notebook):
    last = _read(notebook).cells[-1]
    assert last.cell_type == "markdown" and "Glossary" in last.source
    rows = [line for line in last.source.splitlines() if line.startswith("| ") and re.search(r"[\u4e00-\u9fff]", line)]
    assert len(rows) >= 6, f"{notebook.name}: glossary has {len(rows)} Chinese terms"
    for row in rows:
        assert len([cell for cell in row.strip("|").split("|") if cell.strip()]) == 3, row


def test_glossaries_cover_the_seed_terms():
    text = "".join(_read(nb).cells[-1].source for nb in NOTEBOOKS)
    missing = [term for term in GLOSSARY_TERMS if term not in text]
    assert not missing, f"glossaries lack {missing}"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_uses_the_course_names(notebook):
    code = "\n".join(c.source for c in _code_cells(_read(notebook)))
    for wrong in ("seqLen", "batchSize", "inputSize", "hiddenSize", "numLayers", "hidden_dim", "n_layers"):
        assert wrong not in code, f"{notebook.name} uses {wrong}; the course's names match PyTorch's arguments"


def _defined_names(source: str) -> set[str]:
    """Every function and class name the source defines, at any depth."""
    definitions = (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef)
    return {n.name for n in ast.walk(ast.parse(source)) if isinstance(n, definitions)}


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_gives_no_graded_answer(notebook):
    nb = _read(notebook)
    code = "\n\n".join(c.source for c in _code_cells(nb))
    defined = _defined_names(code)
    assert not defined & GRADED_NAMES, f"{notebook.name} defines {sorted(defined & GRADED_NAMES)}"
    assert not re.search(r"Linear\(\s*hidden_size\s*,\s*num_class", code), (
        f"{notebook.name} builds a Linear head: that is a graded exercise of hello_ohlol")
    assert not re.search(r"torch\.(lstm_cell|gru_cell|rnn_tanh_cell)|_VF", code)


def test_widgets_module_gives_no_graded_answer():
    source = (ROOT / "grading" / "student" / "widgets.py").read_text(encoding="utf-8")
    defined = _defined_names(source)
    assert not defined & GRADED_NAMES, f"widgets.py defines {sorted(defined & GRADED_NAMES)}"
    assert not re.search(r"Linear\(", source), "the explorers use the notes' head-less models only"


# --------------------------------------------------------------------------- (d) explorers


def test_line_plot_svg_draws_every_series_and_the_reference_line():
    svg = W.line_plot_svg({"a": [3.0, 2.0, 1.0], "b": [1.0, 1.5]}, xlabel="epoch", ylabel="loss",
                          hline=0.5, hline_label="floor")
    root = ET.fromstring(svg)
    ns = "{http://www.w3.org/2000/svg}"
    assert len(root.findall(f"{ns}polyline")) == 2
    assert "floor" in svg and "epoch" in svg and "stroke-dasharray" in svg
    log_svg = W.line_plot_svg({"g": [1e-30, 0.0, 1e-3, 1.0]}, log_y=True)
    points = ET.fromstring(log_svg).find(f"{ns}polyline").get("points").split()
    assert len(points) == 3, "non-positive values are left out of a log plot"
    assert ET.fromstring(W.line_plot_svg({"one": [2.0]})).find(f"{ns}circle") is not None


def test_hidden_states_are_tanh_bounded_and_reproducible():
    inputs, hiddens = W.hidden_states(seq_len=6, input_size=3, hidden_size=4, seed=1)
    assert inputs.shape == (6, 3) and hiddens.shape == (6, 4)
    assert hiddens.abs().max() <= 1
    again = W.hidden_states(seq_len=6, input_size=3, hidden_size=4, seed=1)[1]
    assert torch.equal(hiddens, again)
    saturated = W.hidden_states(seq_len=6, input_scale=50.0, seed=1)[1]
    assert saturated.abs().mean() > 0.9 > hiddens.abs().mean()
    state = torch.get_rng_state()
    W.hidden_states(seed=3)
    assert torch.equal(state, torch.get_rng_state()), "explorers must not move the notebook's random stream"


def test_sequence_svg_shows_steps_up_to_t():
    inputs, hiddens = W.hidden_states(seq_len=4)
    svg = W.sequence_svg(inputs, hiddens, t=2)
    ET.fromstring(svg)
    assert svg.count("opacity='1'") == 2 and svg.count("opacity='0.25'") == 2
    assert "h4" in svg and "x1" in svg


def test_describe_rnn_run_reads_the_shapes_off_real_tensors():
    text = W.describe_rnn_run(seq_len=3, batch_size=2, input_size=4, hidden_size=5, num_layers=2)
    assert re.search(r"inputs\s+\(3, 2, 4\)", text) and re.search(r"output\s+\(3, 2, 5\)", text)
    assert re.search(r"h0\s+\(2, 2, 5\)", text) and re.search(r"h_n\s+\(2, 2, 5\)", text)
    text_bf = W.describe_rnn_run(seq_len=3, batch_size=7, input_size=4, hidden_size=5, num_layers=2, batch_first=True)
    assert re.search(r"inputs\s+\(7, 3, 4\)", text_bf) and re.search(r"output\s+\(7, 3, 5\)", text_bf)
    assert re.search(r"h0\s+\(2, 7, 5\)", text_bf) and re.search(r"h_n\s+\(2, 7, 5\)", text_bf)
    assert "batch_first=True" in text_bf


def test_logit_bound_loss_is_the_loss_of_the_best_bounded_logits():
    assert W.logit_bound_loss(4, seq_len=5) == pytest.approx(5 * math.log(1 + 3 * math.exp(-2)))
    assert W.logit_bound_loss(4, seq_len=5) == pytest.approx(1.7038, abs=1e-4)
    best = torch.full((1, 4), -1.0)
    best[0, 2] = 1.0
    ce = torch.nn.functional.cross_entropy(best, torch.tensor([2]))
    assert W.logit_bound_loss(4) == pytest.approx(ce.item(), rel=1e-6)


def test_train_notes_rnn_learns_but_stays_above_the_floor():
    history = W.train_notes_rnn(lr=0.1, num_epochs=60, seed=7)
    losses, predictions = history["losses"], history["predictions"]
    assert len(losses) == len(predictions) == 60
    assert losses[-1] < losses[0]
    assert min(losses) > W.logit_bound_loss(4)
    assert all(len(p) == 5 and set(p) <= set("ehlo") for p in predictions)
    assert W.train_notes_rnn(lr=0.1, num_epochs=60, seed=7) == history
    assert len(W.train_notes_rnn(num_epochs=3, num_layers=2)["losses"]) == 3


def test_embedding_lookup_is_one_hot_times_weight():
    parts = W.embedding_lookup(2, embedding_size=5, seed=0)
    assert parts["weight"].shape == (4, 5)
    assert torch.equal(parts["one_hot"], torch.tensor([0.0, 0.0, 1.0, 0.0]))
    assert torch.equal(parts["lookup"], parts["weight"][2])
    assert torch.allclose(parts["product"], parts["lookup"])
    assert "equal: True" in W.embedding_lookup_html(2, embedding_size=5)


def test_input_gradient_norms_vanish_for_the_rnn_and_open_gates_help():
    rnn = W.input_gradient_norms("RNN", seq_len=60, hidden_size=16)
    assert len(rnn) == 60 and rnn[0] < 1e-8 * rnn[-1]
    for kind in ("LSTM", "GRU"):
        closed = W.input_gradient_norms(kind, seq_len=60, hidden_size=16)
        opened = W.input_gradient_norms(kind, seq_len=60, hidden_size=16, gate_bias=3.0)
        assert opened[0] / opened[-1] > 1e3 * closed[0] / closed[-1], kind
    assert W.input_gradient_norms("RNN", seq_len=20, gate_bias=3.0) == W.input_gradient_norms("RNN", seq_len=20)


EXPLORERS = {
    "hidden_state_explorer": ("t", 4),
    "shapes_explorer": ("batch_first", True),
    "hello_ohlol_explorer": ("num_epochs", 120),
    "embedding_explorer": ("index", 3),
    "gradient_norms_explorer": ("gate_bias", 2.0),
}


@pytest.mark.parametrize("builder", sorted(EXPLORERS))
def test_explorer_view_follows_its_controls(builder):
    import ipywidgets

    explorer = getattr(W, builder)()
    assert isinstance(explorer, ipywidgets.VBox) and explorer.view in explorer.children
    assert explorer.view.value.strip(), "the view is drawn when the explorer is built"
    name, value = EXPLORERS[builder]
    before = explorer.view.value
    start = time.perf_counter()
    explorer.controls[name].value = value
    seconds = time.perf_counter() - start
    assert explorer.view.value != before, f"{builder}: changing {name} did not change the view"
    assert seconds < 1.0, f"{builder}: an update took {seconds:.2f} s"


def test_every_control_of_every_explorer_is_live():
    import ipywidgets

    for builder in EXPLORERS:
        explorer = getattr(W, builder)()
        for name, control in explorer.controls.items():
            before = explorer.view.value
            if isinstance(control, ipywidgets.Dropdown):
                control.value = next(v for _, v in control.options if v != control.value)
            elif isinstance(control, ipywidgets.Checkbox):
                control.value = not control.value
            elif isinstance(control, ipywidgets.FloatLogSlider):
                control.value = control.base ** control.max
            else:
                control.value = control.max if control.value != control.max else control.min
            assert explorer.view.value != before, f"{builder}: control {name} does nothing"


def test_hidden_state_explorer_keeps_t_within_seq_len():
    explorer = W.hidden_state_explorer()
    explorer.controls["t"].value = 6
    explorer.controls["seq_len"].value = 3
    assert explorer.controls["t"].max == 3 and explorer.controls["t"].value == 3
    assert "h3 = [" in explorer.view.value


def test_hello_ohlol_explorer_reports_the_floor():
    explorer = W.hello_ohlol_explorer()
    assert "floor: 0.3408" in explorer.view.value
    assert re.search(r"predicted after epoch 15: [ehlo]{5}", explorer.view.value)


def test_explorer_updates_are_fast():
    explorer = W.hello_ohlol_explorer()
    explorer.controls["num_epochs"].value = explorer.controls["num_epochs"].max
    start = time.perf_counter()
    explorer.controls["lr"].value = 0.05
    assert time.perf_counter() - start < 1.0
    explorer = W.gradient_norms_explorer()
    explorer.controls["hidden_size"].value = explorer.controls["hidden_size"].max
    start = time.perf_counter()
    explorer.controls["seq_len"].value = explorer.controls["seq_len"].max
    assert time.perf_counter() - start < 1.0


def test_notebooks_display_the_explorers():
    shown = set()
    for notebook in NOTEBOOKS:
        for cell in _code_cells(_read(notebook)):
            shown |= set(re.findall(r"W\.(\w+_explorer)\(\)", cell.source))
            for out in cell.outputs:
                if "application/vnd.jupyter.widget-view+json" in out.get("data", {}):
                    assert out["data"]["text/plain"].startswith("Explorer(")
    assert shown == set(EXPLORERS)


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_notebook_carries_no_volatile_metadata(notebook):
    """Execution timestamps change at every run and say nothing: `python -m grading lectures` strips them."""
    nb = _read(notebook)
    for cell in nb.cells:
        volatile = set(cell.metadata) & set(VOLATILE_CELL_METADATA)
        assert not volatile, f"{notebook.name}: cell metadata {sorted(volatile)}; run `make lectures`"


@pytest.mark.parametrize("notebook", NOTEBOOKS, ids=IDS)
def test_widget_state_is_small_and_only_what_outputs_display(notebook):
    nb = _read(notebook)
    state = nb.metadata["widgets"][WIDGET_STATE]["state"]
    assert set(state) == reachable_models(state, displayed_models(nb)), (
        f"{notebook.name}: saved widget models that no output displays; run `make lectures`")
    assert widget_state_bytes(nb) < MAX_WIDGET_STATE_BYTES, (
        f"{notebook.name}: {widget_state_bytes(nb)} bytes of widget state; an explorer saves too much")


def test_cleaning_drops_timestamps_and_undisplayed_widget_models():
    view = {"model_id": "aa", "version_major": 2, "version_minor": 0}
    cell = nbformat.v4.new_code_cell("W.explorer()", outputs=[nbformat.v4.new_output(
        "display_data", data={"text/plain": "Explorer()", "application/vnd.jupyter.widget-view+json": view})])
    cell.metadata["execution"] = {"iopub.status.busy": "2026-11-28T08:47:25.703488Z"}
    nb = nbformat.v4.new_notebook(cells=[cell])
    model = {"model_name": "VBoxModel", "state": {"children": ["IPY_MODEL_bb"], "layout": "IPY_MODEL_cc"}}
    nb.metadata["widgets"] = {WIDGET_STATE: {"state": {"aa": model, "bb": {"state": {}}, "cc": {"state": {}},
                                                       "dd": {"state": {"layout": "IPY_MODEL_cc"}}},
                                             "version_major": 2, "version_minor": 0}}
    clean(nb)
    assert "execution" not in nb.cells[0].metadata
    assert sorted(nb.metadata["widgets"][WIDGET_STATE]["state"]) == ["aa", "bb", "cc"]


def test_widget_state_is_saved_with_the_notebooks():
    for notebook in NOTEBOOKS:
        metadata = json.loads(notebook.read_text(encoding="utf-8"))["metadata"]
        state = metadata.get("widgets", {}).get("application/vnd.jupyter.widget-state+json", {})
        assert state.get("state"), f"{notebook.name}: execute with nbconvert so the widget state is stored"
