"""reports/report.html, reports/grades.csv and the feedback pages, on a tiny made-up course (no grading run).

The course root holds the repository's nbgrader_config.py, a gradebook with one assignment of one notebook
(two test cells and a written answer), and hand-written results files: a healthy submission, failing ones,
a flagged one, an ungradable one, grading errors (one whose earlier grade was kept, one of a student the
gradebook does not know), an old file without the new keys, and a student whose id and messages are HTML.
"""

from __future__ import annotations

import csv
import glob
import html
import json
import re
import shutil
from html.parser import HTMLParser
from pathlib import Path

import nbformat
import pytest
from nbgrader.api import Gradebook
from traitlets.config import Config

from conftest import REPO
from grading.instructor import report
from grading.instructor.feedback import NOT_GRADED, TrustedOutputs, load_verdicts, render_markdown, safe_markdown
from grading.instructor.messages import VERIFIER_COMMENT, cut_at_sentence

A, NB = "rnn_basics", "rnn_cell"
pytestmark = pytest.mark.filterwarnings("ignore::sqlalchemy.exc.SAWarning")  # nbgrader 0.9.6 with SQLAlchemy 2
HOSTILE = '<b id="inj">x'  # a student id cannot hold "/": it is a file name
HOSTILE_MESSAGE = 'AssertionError: <b id="inj">x</b> <script>alert(1)</script>'
PAYLOADS = "Look: <script>alert(1)</script> and <img src=x onerror=alert(2)>"
FIGURE = "![fig](rnn_cell_inside.svg)"
GINA = "grading error — regrade: the kernel server did not start"


def cell(score: float, max_score: float = 2.0, message: str | None = None) -> dict:
    return {"score": score, "max_score": max_score, "message": message, "kernel_score": score}


def notebook(cells: dict, flags=(), anomalies=(), incident=None, execute=1.0, verify=0.5) -> dict:
    return {"score": sum(c["score"] for c in cells.values()), "max_score": sum(c["max_score"] for c in cells.values()),
            "cells": cells, "flags": list(flags), "anomalies": list(anomalies), "incident": incident,
            "verify_seconds": verify, "execute_seconds": execute}


def result(student: str, notebooks: dict, **extra) -> dict:
    res = {"student": student, "assignment": A, "notebooks": notebooks, "error": None,
           "seconds": {"autograde": 1.0, "verify": 0.5, "feedback": 0.1, "total": 1.6}, "worker": 0,
           "grading_error": None, "kept_previous": False}
    res.update(extra)
    return res


PASS = {"test_a": cell(2), "test_b": cell(1, 1)}
RESULTS = {
    "alice": result("alice", {NB: notebook(PASS, execute=3.25, verify=0.75)}),
    "bob": result("bob", {NB: notebook({"test_a": cell(0, message="ValueError: expected shape (3, 4), got (4, 3)"),
                                        "test_b": cell(0, 1, "this test failed")}, execute=1.5)}),
    "carol": result("carol", {NB: notebook(PASS, flags=["tampering: redefines check_close"], execute=0.5)}),
    "dave": result("dave", {NB: notebook({"test_a": cell(0, message="the notebook is not valid JSON"),
                                          "test_b": cell(0, 1, "the notebook is not valid JSON")},
                                         anomalies=["rnn_cell.ipynb is not valid JSON"], execute=None, verify=None)}),
    "erin": result("erin", {NB: notebook(PASS, execute=2.0)}, kept_previous=True,
                   grading_error="grading error — regrade: the worker died"),
    "gina": result("gina", {NB: {"score": 0.0, "max_score": 3.0, "flags": [], "anomalies": [], "incident": None,
                                 "cells": {"test_a": cell(0, message=GINA), "test_b": cell(0, 1, GINA)}}},
                   grading_error=GINA, error=GINA),  # as the grader writes it: every cell set to 0
    HOSTILE: result(HOSTILE, {NB: notebook({"test_a": cell(0, message=HOSTILE_MESSAGE), "test_b": cell(1, 1)},
                                           flags=[f"tampering: {HOSTILE_MESSAGE}"],
                                           anomalies=[f"cell with unknown grade_id {HOSTILE!r}"], execute=0.25)}),
}
SCORES = {"alice": (2, 1), "bob": (0, 0), "carol": (2, 1), "dave": (0, 0), "erin": (2, 1), HOSTILE: (0, 1)}
GRADEBOOK_ONLY = "frank"  # in the gradebook, never graded


def make_gradebook(root: Path) -> None:
    """One assignment, one notebook with two test cells and a written answer; a submission per student."""
    with Gradebook(f"sqlite:///{root}/gradebook.db", "rnn-course") as gb:
        gb.add_assignment(A)
        gb.add_notebook(NB, A)
        gb.add_grade_cell("test_a", NB, A, max_score=2, cell_type="code")
        gb.add_grade_cell("test_b", NB, A, max_score=1, cell_type="code")
        gb.add_solution_cell("answer", NB, A)
        gb.add_student(GRADEBOOK_ONLY)
        for student, (a, b) in SCORES.items():
            gb.add_student(student)
            gb.add_submission(A, student)
            gb.find_grade("test_a", NB, A, student).auto_score = a
            gb.find_grade("test_b", NB, A, student).auto_score = b
        gb.db.commit()


def write_results(root: Path, results: dict, old_style: tuple[str, ...] = ("alice",)) -> None:
    """One file per submission; the ``old_style`` ones lack grading_error and kept_previous, as older runs wrote."""
    folder = root / "reports" / "results" / A
    folder.mkdir(parents=True, exist_ok=True)
    for student, res in results.items():
        res = dict(res)
        if student in old_style:
            res.pop("grading_error"), res.pop("kept_previous")
        (folder / f"{student}.json").write_text(json.dumps(res, indent=1))


@pytest.fixture
def course(tmp_path: Path) -> Path:
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    make_gradebook(tmp_path)
    write_results(tmp_path, RESULTS)
    return tmp_path


def section(page: str, title: str) -> str:
    """The HTML from ``<h2>title</h2>`` to the next heading (or the end)."""
    start = page.index(f"<h2>{title}</h2>") + len(title) + 9
    end = page.find("<h2>", start)
    return page[start:end if end >= 0 else len(page)]


def data_rows(fragment: str) -> list[str]:
    """The table rows of a fragment, header row left out."""
    return re.findall(r"<tr>(?:(?!<th>).)*?</tr>", fragment)


# ---------------------------------------------------------------- report.html

SECTIONS = ["Grading errors (regrade these)", "Grades per student", "Scores per assignment", "Pass rate per test cell",
            "Most frequent failures", "Tampering and disagreements (flagged)", "Ungradable or repaired submissions",
            "Slowest notebooks"]


def test_report_has_every_section_filled(course):
    page = report.write_report(course).read_text()
    assert [t for t in SECTIONS if f"<h2>{t}</h2>" in page] == SECTIONS
    assert page.index("Grading errors (regrade these)") < page.index("Scores per assignment")
    summary = "8 students, 7 graded submissions, 2 grading errors (regrade these), of which 1 kept an earlier grade"
    assert summary in page
    assert page.count("data:image/png;base64,") == 2
    assert "ValueError: expected shape (3, 4), got (4, 3)" in section(page, "Most frequent failures")
    assert "tampering: redefines check_close" in section(page, "Tampering and disagreements (flagged)")
    assert "rnn_cell.ipynb is not valid JSON" in section(page, "Ungradable or repaired submissions")
    assert data_rows(section(page, "Pass rate per test cell")) == [
        "<tr><td>rnn_basics/rnn_cell/test_a</td><td>3</td><td>6</td></tr>",  # gina's zeroed cells are no attempt
        "<tr><td>rnn_basics/rnn_cell/test_b</td><td>4</td><td>6</td></tr>"]
    assert "kernel server" not in section(page, "Most frequent failures")
    assert "kernel server" not in section(page, "Ungradable or repaired submissions")


def test_slowest_notebooks_lists_every_executed_notebook_with_its_split(course):
    rows = data_rows(section(report.write_report(course).read_text(), "Slowest notebooks"))
    assert len(rows) == 5  # every notebook with execute_seconds: not dave's (never ran), gina has none
    assert "<td>4.00</td><td>alice</td><td>rnn_basics/rnn_cell</td><td>kernel 3.25, verifier 0.75</td>" in rows[0]
    assert "dave" not in "".join(rows)


def test_grading_errors_section_names_each_student_and_whether_the_earlier_grade_was_kept(course):
    errors = section(report.write_report(course).read_text(), "Grading errors (regrade these)")
    rows = data_rows(errors)
    assert len(rows) == 2
    erin = next(r for r in rows if "<td>erin</td>" in r)
    assert html.escape("grading error — regrade: the worker died") in erin and "earlier grade kept" in erin
    gina = next(r for r in rows if "<td>gina</td>" in r)
    assert "the kernel server did not start" in gina and "earlier grade kept" not in gina


def test_report_lists_every_student_of_the_gradebook_and_of_the_results(course):
    page = report.write_report(course).read_text()
    students = section(page, "Grades per student")
    for student in [*SCORES, GRADEBOOK_ONLY, "gina"]:
        assert f"<td>{html.escape(student)}</td>" in students, student
    assert len(data_rows(students)) == 8
    gina = next(r for r in data_rows(students) if "<td>gina</td>" in r)
    assert "not in the gradebook" in gina and "grading error" in gina
    dave = next(r for r in data_rows(students) if "<td>dave</td>" in r)
    assert "ungradable or repaired" in dave


def test_report_escapes_student_ids_messages_flags_and_anomalies(course):
    page = report.write_report(course).read_text()
    assert "<script" not in page and 'id="inj"' not in page and "<b " not in page
    assert html.escape(HOSTILE) in section(page, "Grades per student")
    assert html.escape(HOSTILE_MESSAGE) in section(page, "Most frequent failures")
    assert html.escape(f"tampering: {HOSTILE_MESSAGE}") in section(page, "Tampering and disagreements (flagged)")
    assert html.escape(repr(HOSTILE)) in section(page, "Ungradable or repaired submissions")
    assert html.escape(HOSTILE) in section(page, "Slowest notebooks")


def test_an_unreadable_results_file_is_reported_as_a_grading_error(course):
    (course / "reports" / "results" / A / "hank.json").write_text("{not json")
    page = report.write_report(course).read_text()
    hank = next(r for r in data_rows(section(page, "Grading errors (regrade these)")) if "<td>hank</td>" in r)
    assert "unreadable results file hank.json" in hank
    assert "3 grading errors" in page


def test_report_without_results_files(tmp_path):
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    make_gradebook(tmp_path)
    page = report.write_report(tmp_path).read_text()
    assert "0 graded submissions, 0 grading errors" in page
    assert "<p>None.</p>" in section(page, "Grading errors (regrade these)")
    assert "<td>frank</td>" in section(page, "Grades per student")


# ---------------------------------------------------------------- grades.csv

def test_grades_csv_has_a_grading_error_column_and_every_student(course):
    with open(report.write_grades_csv(course), newline="") as f:
        reader = csv.DictReader(f)
        rows = {r["student"]: r for r in reader}
    assert reader.fieldnames == ["student", f"{A}/{NB}", "total", "grading_error"]
    assert set(rows) == {*SCORES, GRADEBOOK_ONLY, "gina"}
    assert rows["erin"]["grading_error"] == A and rows["gina"]["grading_error"] == A
    assert all(rows[s]["grading_error"] == "" for s in rows if s not in ("erin", "gina"))
    assert rows["alice"][f"{A}/{NB}"] == rows["alice"]["total"] == "3"
    assert rows[GRADEBOOK_ONLY][f"{A}/{NB}"] == "" and rows[GRADEBOOK_ONLY]["total"] == "0"
    assert rows["gina"][f"{A}/{NB}"] == rows["gina"]["total"] == ""


# ---------------------------------------------------------------- feedback

class _Tags(HTMLParser):
    """Every start tag of a page, with its attributes, and the text inside <script> elements."""

    def __init__(self):
        super().__init__()
        self.tags, self.scripts, self._in_script = [], [], False

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))
        self._in_script = tag == "script"

    def handle_endtag(self, tag):
        self._in_script = False

    def handle_data(self, data):
        if self._in_script:
            self.scripts.append(data)


def parse(page: str) -> _Tags:
    parser = _Tags()
    parser.feed(page)
    return parser


def submission_notebook() -> nbformat.NotebookNode:
    """A graded notebook: hostile markdown, a figure, an answer cell, a test cell and an ordinary code cell."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": "python3", "display_name": "Python 3", "language": "python"}
    answer = nbformat.v4.new_markdown_cell(PAYLOADS)
    answer.metadata["nbgrader"] = {"grade_id": "answer", "solution": True, "grade": False, "locked": False,
                                   "schema_version": 3}
    test = nbformat.v4.new_code_cell("assert True", outputs=[nbformat.v4.new_output("stream", text="leak\n")])
    test.metadata["nbgrader"] = {"grade_id": "test_a", "grade": True, "solution": False, "locked": True,
                                 "points": 2, "schema_version": 3}
    code = nbformat.v4.new_code_cell("print(1)", outputs=[nbformat.v4.new_output("stream", text="<b>1</b>\n")])
    nb.cells = [nbformat.v4.new_markdown_cell(f"# RNN cell\n\n{FIGURE}\n\n$h_t = \\tanh(x_t < 1)$"), answer, test, code]
    return nb


def feedback_page(course: Path, student: str, comment: str = "see <img src=x onerror=alert(3)>",
                  exporter: str = "") -> str:
    """nbgrader's own feedback for ``student``, with the grading settings' preprocessors (and exporter, unless
    ``exporter`` names another)."""
    from grading.instructor.course import open_api, working_directory
    from grading.instructor.settings import GradingSettings, grading_config

    path = course / "autograded" / student / A / f"{NB}.ipynb"
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(submission_notebook(), path)
    with Gradebook(f"sqlite:///{course}/gradebook.db", "rnn-course") as gb:
        gb.find_comment("answer", NB, A, student).manual_comment = comment
        gb.db.commit()
    with working_directory(course):
        config = grading_config(course / "submitted", GradingSettings())
        if exporter:
            config.GenerateFeedback.exporter_class = exporter
        outcome = open_api(course, config).generate_feedback(A, student, force=True)
    assert outcome["success"], outcome
    return (course / "feedback" / student / A / f"{NB}.html").read_text()


def test_feedback_page_runs_no_student_script_and_keeps_figures(course):
    page = feedback_page(course, "bob")
    tags = parse(page)
    assert not [s for s in tags.scripts if "alert(" in s]
    assert not [(t, a) for t, a in tags.tags if any(k.startswith("on") for k in a)]
    assert "onerror=" not in page.replace("onerror=alert(2)&gt;", "")  # shown as text at most, never an attribute
    assert ("img", {"src": "rnn_cell_inside.svg", "alt": "fig"}) in tags.tags
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in page  # the student sees what they wrote
    assert "FAILED (0 / 2 points): ValueError: expected shape (3, 4), got (4, 3)" in page
    assert "leak" not in page and "&lt;b&gt;1&lt;/b&gt;" not in page
    assert "$h_t = \\tanh(x_t &lt; 1)$" in page  # math reaches MathJax as nbconvert writes it


def test_the_feedback_exporter_writes_the_page_nbconverts_exporter_writes(course):
    """FeedbackExporter keeps compiled templates and skips nbconvert's BeautifulSoup pass: same text, same tags
    and attributes (an image without alt text gets nbconvert's), from a fresh exporter and from a warm one."""
    from bs4 import BeautifulSoup

    from grading.instructor.feedback import MISSING_ALT, FeedbackExporter

    def shape(page: str) -> tuple[str, list]:
        """Text, tags and attributes; cell ids left out (each call writes the notebook with new random ones)."""
        soup = BeautifulSoup(page, "html.parser")
        return soup.get_text(), [(tag.name, sorted((k, v) for k, v in tag.attrs.items() if not str(v).startswith(
            "cell-id=")), ) for tag in soup.find_all()]

    theirs = feedback_page(course, "bob", comment="a figure: <img src='x.png'>",
                           exporter="nbconvert.exporters.HTMLExporter")
    for _ in range(2):
        ours = feedback_page(course, "bob", comment="a figure: <img src='x.png'>")
        assert shape(ours) == shape(theirs)
    assert ("img", {"src": "x.png", "alt": MISSING_ALT}) in parse(ours).tags
    assert FeedbackExporter._compiled._code, "the compiled templates are kept"


def page_text(page: str) -> str:
    """What a browser shows of ``page``: its text, every character reference decoded once."""
    from bs4 import BeautifulSoup

    return BeautifulSoup(page, "html.parser").get_text()


def test_feedback_escapes_verdicts_once(course):
    page = feedback_page(course, HOSTILE)
    assert HOSTILE_MESSAGE in page_text(page)
    assert "&amp;lt;" not in page and "<script>alert(1)" not in page


@pytest.mark.parametrize("content", [None, "{not json", "[]", '{"notebooks": {"rnn_cell": {"cells": 3}}}',
                                     json.dumps(RESULTS["gina"]), json.dumps(result("x", {}))])
def test_feedback_says_not_graded_without_trustworthy_results(tmp_path, content):
    shutil.copy(REPO / "nbgrader_config.py", tmp_path / "nbgrader_config.py")
    path = tmp_path / "reports" / "results" / A / "zoe.json"
    if content is not None:
        path.parent.mkdir(parents=True)
        path.write_text(content)
    config = Config()
    config.CourseDirectory.root = str(tmp_path)
    nb, _ = TrustedOutputs(config=config).preprocess(submission_notebook(),
                                                     {"nbgrader": {"assignment": A, "student": "zoe", "notebook": NB}})
    test, code = nb.cells[2], nb.cells[3]
    assert [o.text for o in test.outputs] == [NOT_GRADED + "\n"] and code.outputs == []


def test_a_kept_grade_is_shown_and_a_cell_without_verdict_is_not_graded(tmp_path):
    path = tmp_path / "erin.json"
    path.write_text(json.dumps(RESULTS["erin"]))
    assert load_verdicts(path, NB)["test_a"]["score"] == 2
    assert load_verdicts(path, "other") is None


def test_release_markdown_renders_unchanged_after_cleaning():
    """Every markdown cell of the course (figures, <details> hints, math, code, tables) survives as it was."""
    checked = 0
    for path in sorted(glob.glob(str(REPO / "source" / "*" / "*.ipynb"))):
        for md in (c for c in nbformat.read(path, as_version=4).cells if c.cell_type == "markdown"):
            assert _shape(render_markdown(safe_markdown(md.source))) == _shape(render_markdown(md.source)), md.source
            checked += 1
    assert checked > 20


def _shape(page: str) -> tuple[str, list]:
    """A page's text and its tags with attributes, wrapper divs without attributes left out."""
    tags = parse(page)
    text = re.sub(r"<[^>]+>", "", page.replace("&#10;", "\n"))
    return html.unescape(text).replace("\n", ""), [(t, sorted(a.items())) for t, a in tags.tags if t != "div" or a]


@pytest.mark.parametrize("payload", [
    "<script>alert(1)</script>", "<img src=x onerror=alert(2)>", "[x](javascript:alert(3))",
    "\\[x\\](javascript:alert(4))", "<a href='javascript:alert(5)'>x</a>", "<svg onload=alert(6)>",
    "<iframe src=//evil.example>", "<style>body{display:none}</style>", "$<script>alert(8)</script>$",
    "<details open ontoggle=alert(9)>", "![x](javascript:alert(10))", "<img src='data:text/html,x'>",
    "```\n</pre><script>alert(13)</script>\n```", "<math><mtext><table><mglyph><style><img src=x onerror=alert(14)>",
    "<div>\n\n[x](javascript:alert(15))\n\n</div>", "![x](attachment:missing.png) <script>alert(16)</script>",
])
def test_cleaned_markdown_has_no_active_content(payload):
    tags = parse(render_markdown(safe_markdown(payload)))
    assert not [t for t, _ in tags.tags if t in ("script", "iframe", "style", "svg", "math", "object", "embed")]
    for tag, attrs in tags.tags:
        assert not [k for k in attrs if k.startswith("on") or k == "style"], (tag, attrs)
        for key in ("href", "src"):
            assert not (attrs.get(key) or "").lower().startswith(("javascript:", "data:text")), (tag, attrs)


SHAPE_DIAGNOSIS = ("test_gru_shapes: 0/1 (GRUCellScratch(3, 4).weight_ih has shape (3, 12), expected "
                   "(3*hidden_size=12, input_size=3): the 3 gate blocks r, z, n are stacked along dim 0 * not 1)")


def test_the_verifiers_comment_reads_as_literal_text(course):
    page = feedback_page(course, "bob", VERIFIER_COMMENT + SHAPE_DIAGNOSIS + "\nsecond line <b>x</b>")
    shown = VERIFIER_COMMENT + SHAPE_DIAGNOSIS + "\nsecond line <b>x</b>"
    assert shown in page_text(page), "the diagnosis must reach the student character for character"
    assert "(3hidden_size" not in page and "<em>hidden_size" not in page
    assert "&#10;second line &lt;b&gt;x&lt;/b&gt;</pre>" in page


def test_an_instructors_comment_is_still_markdown(course):
    page = feedback_page(course, "bob", "Good work, **but** see the hint <img src=x onerror=alert(3)>")
    assert "<strong>but</strong>" in page and "onerror=alert" not in page.replace("onerror=alert(2)&gt;", "")


def test_frequent_failures_keep_the_whole_diagnosis_or_cut_at_a_sentence():
    long = ("h_n has shape (num_layers, batch, hidden_size): expected (num_layers=2, batch=3, hidden_size=5), "
            "got (3, 2, 5). batch_first=True changes input and output only; h0 and h_n keep the batch in the "
            "middle. " * 4)
    stats = report.collect([result("ivan", {NB: notebook({"test_a": cell(0, message=long), "test_b": cell(1, 1)})})])
    [(_, message)] = stats["failures"]
    assert message.endswith(". …") and len(message) <= 402, message
    assert " ".join(long.split()).startswith(message.removesuffix(" …"))
    short = "expected (num_layers=2, batch=3, hidden_size=5), got (3, 2, 5)"
    assert cut_at_sentence(short) == short


@pytest.mark.parametrize("limit", [10, 37, 60, 80])
def test_cut_at_sentence_never_cuts_a_word(limit):
    text = "expected (num_layers=2, batch=2, hidden_size=5) in every case whatever batch_first says"
    cut = cut_at_sentence(text, limit)
    assert len(cut) <= limit + 2 and cut.endswith(" …")
    assert text.startswith(cut.removesuffix(" …")) and text[len(cut) - 2] in " ,", cut
