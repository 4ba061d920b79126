"""One set of conventions across every notebook and figure of the course.

- Time steps are numbered from 1 and the initial state is h_0, as in PyTorch's documentation (``h_0``) and code
  (``h0``): inputs x_1 ... x_T, hidden states h_1 ... h_T, x_t = ``inputs[t-1]``, h_t = ``output[t-1]``, h_T = ``h_n``.
- Vectors are rows, as in PyTorch: x W^T, never W x.
- Layers are numbered from 0 (``h_n[0]``, ``weight_ih_l0``), layer 0 at the bottom of a figure.
- Gates in PyTorch's block order: LSTM i, f, g, o; GRU r, z, n.
- "seed" means only the random seed; the lecture notes are Liu Er's, credited wherever they are quoted.
- Every notebook ends with self-check questions, their answers, and a cell to run.

Static checks of the files, no kernel. Every failure names the file, the place and the offending text.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
from dataclasses import dataclass
from itertools import pairwise
from pathlib import Path

import nbformat
import pytest

ROOT = Path(__file__).resolve().parents[1]
LECTURES = sorted(ROOT.glob("notebooks/*.ipynb"))
SOURCES = sorted(ROOT.glob("source/*/*.ipynb"))
NOTEBOOKS = LECTURES + SOURCES
FIGURES = sorted(ROOT.glob("notebooks/figures/*.svg")) + sorted(ROOT.glob("source/*/*.svg"))
STUDENT_MODULES = sorted(ROOT.glob("grading/student/*.py"))
SVG = "{http://www.w3.org/2000/svg}"

PROSE = frozenset({"markdown", "figure"})  # what a student reads as text and math
EVERYTHING = frozenset({"markdown", "code", "output", "figure", "module"})


def rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


@dataclass(frozen=True)
class Piece:
    """One piece of text a student sees: a cell, a cell's output, a figure's text element, a module."""

    where: str
    kind: str
    text: str


def notebook_pieces(path: Path) -> list[Piece]:
    """Every cell's source (markdown or code) and every code cell's text output."""
    pieces = []
    for index, cell in enumerate(nbformat.read(path, as_version=4).cells):
        grade_id = cell.metadata.get("nbgrader", {}).get("grade_id")
        where = f"{rel(path)} cell {index}" + (f" ({grade_id})" if grade_id else "")
        pieces.append(Piece(where, cell.cell_type, cell.source))
        for output in cell.get("outputs", []):
            text = output.get("text") or output.get("data", {}).get("text/plain", "")
            if text:
                pieces.append(Piece(f"{where}, output", "output", "".join(text)))
    return pieces


def svg_texts(path: Path) -> list[tuple[ET.Element, str]]:
    """Every <text>, <title> and <desc> element with its text (tspans joined, so x + subscript 0 reads "x0")."""
    root = ET.parse(path).getroot()
    return [(element, "".join(element.itertext()).strip()) for element in root.iter()
            if element.tag in (f"{SVG}text", f"{SVG}title", f"{SVG}desc")]


def figure_pieces(path: Path) -> list[Piece]:
    pieces = []
    for element, text in svg_texts(path):
        position = f" x={element.get('x')} y={element.get('y')}" if element.get("x") else ""
        pieces.append(Piece(f"{rel(path)} <{element.tag.removeprefix(SVG)}{position}>", "figure", text))
    return pieces


def pieces_of(path: Path) -> list[Piece]:
    if path.suffix == ".ipynb":
        return notebook_pieces(path)
    if path.suffix == ".svg":
        return figure_pieces(path)
    return [Piece(rel(path), "module", path.read_text(encoding="utf-8"))]


def excerpt(text: str, match: re.Match, width: int = 50) -> str:
    start, end = max(0, match.start() - width), min(len(text), match.end() + width)
    return re.sub(r"\s+", " ", f"…{text[start:end]}…")


def offences(path: Path, rules: list[tuple[str, str, frozenset[str]]], flags: int = 0) -> list[str]:
    """``where: rule: 'match' in …context…`` for every match of a rule in the pieces of its kinds."""
    found = []
    for piece in pieces_of(path):
        for pattern, rule, kinds in rules:
            if piece.kind in kinds:
                for match in re.finditer(pattern, piece.text, flags):
                    found.append(f"{piece.where}: {rule}: {match.group(0)!r} in {excerpt(piece.text, match)}")
    return found


def report(found: list[str]) -> str:
    return "\n".join(found)


def ids(paths: list[Path]) -> list[str]:
    return [rel(p) for p in paths]


def test_every_file_is_found():
    """The globs find the course (no rule passes because it looked at nothing)."""
    assert len(LECTURES) >= 5 and len(SOURCES) >= 6, (LECTURES, SOURCES)
    names = {rel(p) for p in FIGURES}
    assert {"notebooks/figures/lstm_cell.svg", "source/lstm_gru/lstm_cell.svg", "notebooks/figures/gru_cell.svg",
            "source/lstm_gru/gru_cell.svg", "notebooks/figures/rnn_layers.svg",
            "source/rnn_basics/unrolled_rnn.svg", "source/rnn_basics/nn_rnn_shapes.svg",
            "source/hello_ohlol/hello_ohlol.svg"} <= names
    assert any(p.name == "lstm_gru.py" for p in STUDENT_MODULES)


# ----------------------------------------------------------------------------- 1. time steps from 1

TIME_RULES = [
    (r"\bx\}?_\{?\s*0\s*\}?(?![\w.\]])", "x_0: the inputs are x_1 ... x_T", EVERYTHING),
    (r"x₀", "x₀: the inputs are x₁ ... x_T", EVERYTHING),
    (r"(?<![\w.])x0\b", "x0 as a label: the inputs are x1 ... xT", PROSE),
    (r"\b(?:output|out|y)\}?_\{?\s*0\s*\}?(?![\w.\]])", "output at step 0: outputs are at steps 1 ... T", EVERYTHING),
    (r"\b[hcx]\}?_\{?\(?\s*-\s*1\b|[hcx]₋₁", "h_{-1}: the initial state is h_0", EVERYTHING),
    (r"(?:\bx|output)\}?_\{?\(?\s*T\s*-\s*1\b", "x_{T-1} / output_{T-1}: the last step is T", EVERYTHING),
    (r"(?i)\bt\s*=\s*0\b", "t = 0: the first step is t = 1 (h_0 is the initial state)", PROSE),
    (r"(?i)\bstep 0\b", "step 0: the first step is step 1", PROSE),
    (r"(?i)\b(?:steps?|t)\b[^.;\n]{0,25}?\b(?:count|counts|counted|counting|numbered)\s+from\s+0\b",
     "steps counted from 0: they count from 1, only code indices count from 0", PROSE),
    (r"\$?[xh]_t\$?\s*(?:=|is)\s*`?(?:inputs|outputs?|out|x)\[t\]|`?(?:inputs|outputs?|out)\[t\]`?\s*(?:=|is)\s*\$?[xh]_t\b",
     "x_t = inputs[t]: x_t is inputs[t-1], h_t is output[t-1]", PROSE),
]


def step_rows_from_zero(path: Path) -> list[str]:
    """A figure's row labelled "step t" numbers its steps from 1."""
    texts = svg_texts(path)
    found = []
    for label, text in texts:
        if re.fullmatch(r"(?:time )?steps?(?: t)?|t", text) and label.get("y"):
            y = float(label.get("y"))
            numbers = [int(t) for e, t in texts if t.isdigit() and e.get("y") and abs(float(e.get("y")) - y) < 4]
            if numbers and min(numbers) != 1:
                found.append(f"{rel(path)} <text y={label.get('y')}>: the row {text!r} numbers its steps "
                             f"{numbers}: steps count from 1")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS + FIGURES, ids=ids(NOTEBOOKS + FIGURES))
def test_time_steps_count_from_one(path):
    found = offences(path, TIME_RULES)
    if path.suffix == ".svg":
        found += step_rows_from_zero(path)
    assert not found, report(found)


# ----------------------------------------------------------------------------- 2. x W^T, never W x

_MATRIX = r"(?<![A-Za-z\\])W\}?(?:_\{[^{}$]*\}|_[A-Za-z·]++)?(?:\^\{\(\w+\)\})?(?:\^\\top|\^T\b|\^\{\\top\})?"
_SPACE = r"(?:\s|\\[,;:! ]|~)*"
_VECTOR = r"(?:\\mathbf\{[xh]\}|\\boldsymbol\{[xh]\}|[xh])(?:_\{[^{}$]*\}|_[A-Za-z0-9]+|_\([^)]*\))?(?![A-Za-z])"
ROW_VECTOR_RULES = [
    (_MATRIX + _SPACE + r"\(?\s*" + _VECTOR, "W x: vectors are rows, write x W^T", PROSE),
    (_MATRIX + _SPACE + r"\(\s*[rz](?:_t)?\s*(?:\\odot|\*|⊙|\\cdot)", "W (r * h): write (r * h) W^T", PROSE),
]


@pytest.mark.parametrize("path", NOTEBOOKS + FIGURES, ids=ids(NOTEBOOKS + FIGURES))
def test_matrices_act_on_row_vectors(path):
    found = offences(path, ROW_VECTOR_RULES)
    assert not found, report(found)


# ----------------------------------------------------------------------------- 3. layers from 0

LAYER_RULES = [
    (r"\blayer 1\b[^.;\n]{0,20}?\breads\s+(?:the\s+)?(?:\$?x\b|\$?x_|`x`|`inputs`|inputs?\b|embedd)",
     "layer 1 reads x: layer 0 reads the inputs", PROSE),
    (r"\b(?:first|bottom|lowest) layer \(layer 1\)|\blayer 1 \((?:the )?(?:first|bottom|lowest)\b",
     "the first layer is layer 0", PROSE),
    (r"\blayers 1 (?:and|to|through|-|–) ?(?:2|L|`?num_layers`?)\b|\blayers 1, ?(?:2|\\dots)|\bl = 1, \\dots, L\b",
     "layers are numbered 0 ... num_layers - 1", PROSE),
]
LAYER_LABELS = {  # figure labels that carry a layer number: their number must grow from the bottom up
    "layer k": r"layer (\d+)",
    "cell _lk": r"(?:cell )?_l(\d+)",
    "h0[k]": r"h0\[(\d+)\]",
    "h_n[k]": r"h_n\[(\d+)\]",
}


def layer_labels_from_the_bottom(path: Path) -> list[str]:
    """Layer labels start at 0, and layer 0 is drawn lowest (SVG y grows downwards)."""
    found = []
    for family, pattern in LAYER_LABELS.items():
        ys: dict[int, list[float]] = {}
        for element, text in svg_texts(path):
            match = re.fullmatch(pattern, text)
            if match and element.get("y"):
                ys.setdefault(int(match.group(1)), []).append(float(element.get("y")))
        if not ys:
            continue
        if min(ys) != 0:
            found.append(f"{rel(path)}: the {family} labels are numbered {sorted(ys)}: layers count from 0")
        heights = [sum(ys[k]) / len(ys[k]) for k in sorted(ys)]
        if any(upper >= lower for lower, upper in pairwise(heights)):
            found.append(f"{rel(path)}: the {family} labels {sorted(ys)} are at y = {heights}: layer 0 belongs "
                         "at the bottom, each layer above the one it reads")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS + FIGURES, ids=ids(NOTEBOOKS + FIGURES))
def test_layers_count_from_zero(path):
    found = offences(path, LAYER_RULES, re.IGNORECASE)
    if path.suffix == ".svg":
        found += layer_labels_from_the_bottom(path)
    assert not found, report(found)


# ----------------------------------------------------------------------------- 4. gates in PyTorch's order

GATES = {
    "LSTM": ("ifgo", r"([ifgo]) ?\(?(?:input|forget|cand\.?|candidate|output)\)?"),
    "GRU": ("rzn", r"([rzn]) ?\(?(?:reset|update|candidate)\)?"),
}


def gate_label_order(path: Path) -> list[str]:
    """The gate labels of a cell figure, left to right, follow PyTorch's blocks; an LSTM or GRU figure has them all."""
    found = []
    for cell, (order, pattern) in GATES.items():
        xs: dict[str, float] = {}
        for element, text in svg_texts(path):
            match = re.fullmatch(pattern, text)
            if match:
                if element.get("x") is None:
                    found.append(f"{rel(path)}: the {cell} gate label {text!r} has no x coordinate to check")
                    continue
                xs[match.group(1)] = float(element.get("x"))
        if cell.lower() in path.name.lower() and set(xs) != set(order):
            found.append(f"{rel(path)}: an {cell} figure labels the gates {sorted(xs)}, not all of {list(order)}")
        drawn = "".join(sorted(xs, key=xs.get))
        if xs and drawn != "".join(g for g in order if g in xs):
            found.append(f"{rel(path)}: the {cell} gates are drawn left to right as {', '.join(drawn)} "
                         f"(x = {[xs[g] for g in drawn]}): PyTorch's order is {', '.join(order)}")
    return found


def gate_lists(path: Path) -> list[str]:
    """A written list of the four LSTM gates (or the three GRU blocks) is in PyTorch's order."""
    found = []
    for piece in pieces_of(path):
        if piece.kind not in PROSE:
            continue
        text = re.sub(r"\$|\\,", "", piece.text)
        for cell, (order, _) in GATES.items():
            letter = f"([{order}])(?:_t)?"
            pattern = rf"(?<![\w\\]){', '.join([letter] * (len(order) - 1))},? (?:and )?{letter}(?![\w])"
            for match in re.finditer(pattern, text):
                if len(set(match.groups())) == len(order) and "".join(match.groups()) != order:
                    found.append(f"{piece.where}: the {cell} gates listed as {match.group(0)!r}: "
                                 f"PyTorch's order is {', '.join(order)}")
    return found


@pytest.mark.parametrize("path", NOTEBOOKS + FIGURES, ids=ids(NOTEBOOKS + FIGURES))
def test_gates_in_pytorchs_order(path):
    found = gate_lists(path)
    if path.suffix == ".svg":
        found += gate_label_order(path)
    assert not found, report(found)


# ----------------------------------------------------------------------------- 5. "seed" and the credit

SEED_AS_NOTES = [("|".join((
    r"\bseed lectures?\b", r"\b(?:the )?seed's (?:LSTM|GRU|model|homework|bug|code|claim|text)\b", r"\bthe seed's\b",
    r"\bseed ?§", r"\bseed homeworks?\b", r"\bseed (?:notes|section|chapter)\b", r"\bas (?:in )?the seed\b",
    r"\bthe seed (?:writes|also|types|says|uses|teaches|calls)\b", r"\bidx2char of the seed\b",
)), '"seed" means only the random seed; the notes are "Liu Er\'s notes (lecture 12)"', EVERYTHING)]


@pytest.mark.parametrize("path", NOTEBOOKS + FIGURES + STUDENT_MODULES, ids=ids(NOTEBOOKS + FIGURES + STUDENT_MODULES))
def test_seed_means_only_the_random_seed(path):
    found = offences(path, SEED_AS_NOTES, re.IGNORECASE)
    assert not found, report(found)


MENTIONS_THE_NOTES = r"\bthe notes\b|\bnotes'|Liu Er|刘二"
CREDIT = re.compile(r"^(?:\*{1,2})?Source:(?:\*{1,2})? Liu Er\b")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_notes_are_credited_where_first_quoted(path):
    """A visible "Source: Liu Er ... lecture 12 ... for teaching" paragraph, no later than the first mention."""
    cells = nbformat.read(path, as_version=4).cells
    markdown = [(i, c.source) for i, c in enumerate(cells) if c.cell_type == "markdown"]
    mentions = [i for i, source in markdown if re.search(MENTIONS_THE_NOTES, source)]
    if not mentions:
        return
    credits = []
    for i, source in markdown:
        visible = re.sub(r"<!--.*?-->|<details>.*?</details>", "", source, flags=re.DOTALL)
        for paragraph in re.split(r"\n\s*\n", visible):
            if CREDIT.match(paragraph.strip()) and all(word in paragraph for word in ("lecture 12", "for teaching")):
                credits.append(i)
    assert credits, (f"{rel(path)}: cell {mentions[0]} quotes the notes, and no paragraph credits them "
                     "(\"Source: Liu Er ... lecture 12 ... quoted ... for teaching\")")
    assert credits[0] <= mentions[0], (f"{rel(path)}: the notes are first mentioned in cell {mentions[0]}, "
                                       f"credited only in cell {credits[0]}")


# ----------------------------------------------------------------------------- 6. self-check at the end

CHECK_HEADING = re.compile(r"^#{2,3} Check yourself\b", re.MULTILINE)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=ids(NOTEBOOKS))
def test_ends_with_self_check(path):
    """4-8 numbered questions, an answer to each in <details>, a code cell to run after them, and only the
    cell to run and a glossary after the questions."""
    name = rel(path)
    cells = nbformat.read(path, as_version=4).cells
    checks = [i for i, c in enumerate(cells) if c.cell_type == "markdown" and CHECK_HEADING.search(c.source)]
    assert len(checks) == 1, f"{name}: {len(checks)} markdown cells headed \"## Check yourself\", expected one"
    k = checks[0]
    source = cells[k].source
    assert "<details>" in source and "</details>" in source and re.search(r"<summary>\s*Answers", source), \
        f"{name} cell {k}: the answers belong in a <details><summary>Answers</summary> ... </details> block"
    questions_part, answers_part = source.split("<details>", 1)
    questions = re.findall(r"^(\d+)\. ", questions_part, re.MULTILINE)
    answers = re.findall(r"^(\d+)\. ", answers_part.split("</details>")[0], re.MULTILINE)
    assert 4 <= len(questions) <= 8, f"{name} cell {k}: {len(questions)} numbered questions, expected 4 to 8"
    assert questions == [str(n) for n in range(1, len(questions) + 1)], f"{name} cell {k}: questions {questions}"
    assert answers == questions, f"{name} cell {k}: questions {questions} but answers {answers}"
    assert re.search(r"then run the (?:next cell|cell below)", questions_part), \
        f"{name} cell {k}: no question says \"predict, then run the next cell\""
    after = cells[k + 1:]
    runnable = [c for c in after if c.cell_type == "code" and c.source.strip()
                and not c.metadata.get("nbgrader", {}).get("grade")]
    assert runnable, f"{name}: no code cell after the self-check questions (cell {k}) to check the predictions"
    for offset, cell in enumerate(after, start=k + 1):
        headings = re.findall(r"^#+ (.*)$", cell.source, re.MULTILINE) if cell.cell_type == "markdown" else []
        assert all(h.startswith("Glossary") for h in headings), \
            f"{name} cell {offset}: {headings} after the self-check: the notebook ends with it (and a glossary)"
