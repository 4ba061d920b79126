"""Feedback a student can trust and that gives nothing away.

nbgrader's feedback shows every cell's raw outputs: tracebacks of hidden tests quote their
source, and a submission can make the kernel print anything during the tests. Here every
code cell's outputs are dropped and each test cell shows the course's own verdict instead
(pass or fail, points, the diagnosis), read from the results file the grader wrote.
Hidden test source is removed from the cells by nbgrader's ClearHiddenTests, which runs first.

nbgrader's feedback template renders markdown cells (and grader comments) with raw HTML
passed through, so a student's markdown could put scripts into the page. Each markdown
cell is therefore rendered here exactly as nbconvert would render it, the HTML is cleaned
with bleach (figures, tables, hints in ``<details>``, code and math survive; scripts, event
handlers and ``javascript:`` links do not), and the cell's source becomes that clean HTML,
packed as one HTML block which nbconvert's markdown renderer passes through untouched.
"""

from __future__ import annotations

import html
import json
import re
from pathlib import Path
from urllib.parse import urlparse

from bleach._vendor.html5lib.filters.base import Filter
from bleach.css_sanitizer import CSSSanitizer
from bleach.sanitizer import Cleaner
from jinja2 import BytecodeCache
from nbconvert.exporters import HTMLExporter, TemplateExporter
from nbconvert.exporters.html import WidgetsDataTypeFilter
from nbconvert.filters.highlight import Highlight2HTML
from nbconvert.filters.markdown_mistune import IPythonRenderer, MarkdownWithMath
from nbformat import NotebookNode
from nbgrader.coursedir import CourseDirectory
from nbgrader.preprocessors import NbGraderPreprocessor

from .messages import VERIFIER_COMMENT
from .records import results_path

NOT_GRADED = "not graded: ask your instructor"
MISSING_ALT = "No description has been provided for this image"  # nbconvert's words

ALLOWED_TAGS = frozenset({
    "a", "abbr", "acronym", "b", "blockquote", "br", "caption", "code", "col", "colgroup", "dd", "del", "details",
    "div", "dl", "dt", "em", "figcaption", "figure", "h1", "h2", "h3", "h4", "h5", "h6", "hr", "i", "img", "input",
    "kbd", "li", "mark", "ol", "p", "pre", "s", "samp", "small", "span", "strong", "sub", "summary", "sup", "table",
    "tbody", "td", "tfoot", "th", "thead", "tr", "u", "ul", "var",
})
HEADINGS = frozenset({"h1", "h2", "h3", "h4", "h5", "h6"})
TAG_ATTRIBUTES = {
    "a": {"href"},
    "img": {"src", "alt", "width", "height"},
    "td": {"style", "colspan", "rowspan", "align"},
    "th": {"style", "colspan", "rowspan", "align"},
    "ol": {"start", "type"},
    "details": {"open"},
    "input": {"type", "checked", "disabled"},  # markdown task lists: [x] done
}
IMAGE_DATA = re.compile(r"data:image/(png|jpeg|gif|webp|svg\+xml)[;,]", re.I)
SAFE_GRADE_ID = re.compile(r"^[A-Za-z0-9_.-]+$")
_CSS = CSSSanitizer(allowed_css_properties=["text-align"])


def verdict_text(cell: dict) -> str:
    """One test cell's line in the feedback (plain text: nbconvert escapes it when it renders the output)."""
    try:
        score, points = float(cell.get("score") or 0), float(cell.get("max_score") or 0)
    except (AttributeError, TypeError, ValueError):
        return NOT_GRADED
    if score >= points:
        return f"PASSED ({_num(score)} / {_num(points)} points)"
    message = cell.get("message") or "this test failed"
    return f"FAILED ({_num(score)} / {_num(points)} points): {message}"


def _num(value: float) -> str:
    return f"{value:g}"


def load_verdicts(path: Path, notebook: str) -> dict | None:
    """grade_id -> verdict for one notebook, or None when the results file is missing, unreadable or says
    the submission could not be graded (then no cell's verdict can be trusted)."""
    try:
        results = json.loads(Path(path).read_text())
    except (OSError, ValueError):
        return None
    if not isinstance(results, dict) or (results.get("grading_error") and not results.get("kept_previous")):
        return None
    entry = results.get("notebooks")
    entry = entry.get(notebook) if isinstance(entry, dict) else None
    cells = entry.get("cells") if isinstance(entry, dict) else None
    return {gid: v for gid, v in cells.items() if isinstance(v, dict)} if isinstance(cells, dict) else None


def _allowed_attribute(tag: str, name: str, value: str) -> bool:
    """bleach's attribute filter: layout attributes only; links and images to safe places only."""
    if name in ("class", "title") or (name == "id" and tag in HEADINGS):
        return True
    if name not in TAG_ATTRIBUTES.get(tag, ()):
        return False
    if name == "href":
        return urlparse(value.strip()).scheme.lower() in ("", "http", "https", "mailto")
    if name == "src":
        return urlparse(value.strip()).scheme.lower() in ("", "http", "https") or bool(IMAGE_DATA.match(value.strip()))
    if tag == "input" and name == "type":
        return value.strip().lower() == "checkbox"
    return True


class _ImageAltText(Filter):
    """Give every image the text nbconvert's HTML exporter gives one without ``alt`` (screen readers read it)."""

    def __iter__(self):
        for token in super().__iter__():
            is_image = token["type"] in ("StartTag", "EmptyTag") and token["name"] == "img"
            if is_image and (None, "alt") not in token["data"]:
                token["data"][(None, "alt")] = MISSING_ALT
            yield token


_CLEANER = Cleaner(tags=ALLOWED_TAGS, attributes=_allowed_attribute, protocols={"http", "https", "mailto", "data"},
                   strip=False, strip_comments=True, css_sanitizer=_CSS, filters=[_ImageAltText])


def clean_html(fragment: str) -> str:
    """``fragment`` with every tag, attribute and URL not on the allowlist removed or escaped (shown as text), and
    every image given ``alt`` text."""
    return _CLEANER.clean(fragment)


def render_markdown(source: str, attachments: dict | None = None, path: str = "") -> str:
    """``source`` as HTML, rendered the way nbconvert's HTML exporter renders a markdown cell."""
    renderer = IPythonRenderer(escape=False, attachments=attachments or {}, path=path)
    return MarkdownWithMath(renderer=renderer).render(source)


def safe_markdown(source: str, attachments: dict | None = None, path: str = "") -> str:
    """Markdown that renders as the cleaned HTML of ``source``.

    The result is a single ``<div>`` HTML block with no line breaks inside (newlines become ``&#10;``, the
    same character to a browser, also inside ``<pre>``): a markdown renderer ends an HTML block only at a
    blank line, so it passes the whole block through and never re-reads the cleaned text as markdown.
    """
    try:
        rendered = render_markdown(source, attachments, path)
    except Exception:  # noqa: BLE001 - e.g. a missing attachment: show the source as text instead
        rendered = f"<pre>{html.escape(source)}</pre>"
    cleaned = clean_html(rendered).strip()
    return "<div>\n" + cleaned.replace("\r", "").replace("\n", "&#10;") + "\n</div>" if cleaned else ""


def literal_markdown(text: str) -> str:
    """Markdown that renders ``text`` as itself: escaped, line breaks and spaces kept, no emphasis or links.

    One ``<div>`` HTML block without line breaks inside, which a markdown renderer passes through whole.
    """
    escaped = html.escape(text.replace("\r", ""), quote=False).replace("\n", "&#10;")
    return f'<div>\n<pre class="grader-comment" style="white-space: pre-wrap">{escaped}</pre>\n</div>'


def shown_comment(comment: str) -> str:
    """A grader comment as the feedback shows it: the verifier's diagnosis as literal text (its shapes such as
    ``(3*hidden_size, input_size)`` must not turn into emphasis), an instructor's comment as cleaned markdown."""
    if comment.startswith(VERIFIER_COMMENT):
        return literal_markdown(comment)
    return safe_markdown(comment)


class TrustedOutputs(NbGraderPreprocessor):
    """Replace every code cell's outputs: the course's verdict on test cells, nothing elsewhere;
    make markdown cells and grader comments safe to render."""

    def preprocess(self, nb: NotebookNode, resources: dict) -> tuple[NotebookNode, dict]:
        info = resources.get("nbgrader", {})
        root = Path(CourseDirectory(config=self.config).root)
        path = results_path(root, info.get("assignment", ""), info.get("student", ""))
        verdicts = load_verdicts(path, info.get("notebook", ""))
        where = resources.get("metadata", {}).get("path", "")
        for cell in nb.cells:
            _check_grade_id(cell)
            cell.source = shown_source(cell.source)
            if cell.cell_type == "code":
                cell.outputs = _verdict_outputs(cell, verdicts)
            elif cell.cell_type == "markdown":
                cell.source = safe_markdown(cell.source, cell.get("attachments"), where)
                cell.pop("attachments", None)
            meta = cell.get("metadata", {}).get("nbgrader", {})
            if meta.get("comment"):
                meta["comment"] = shown_comment(str(meta["comment"]))
        return nb, resources


def shown_source(source: str, max_chars: int = 20_000, max_line: int = 2_000) -> str:
    """A cell's source as the feedback shows it: highlighting and markdown rendering slow down badly on
    huge cells and very long lines, so both are cut (the autograded notebook keeps the whole cell)."""
    if len(source) <= max_chars and all(len(line) <= max_line for line in source.splitlines()):
        return source
    lines = [line if len(line) <= max_line else line[:max_line] + " …" for line in source[:max_chars].splitlines()]
    return "\n".join(lines) + f"\n# … (cut for the feedback: the cell has {len(source):,} characters)"


def _verdict_outputs(cell: NotebookNode, verdicts: dict | None) -> list:
    """A code cell's new outputs: one line on a graded cell, nothing on any other cell."""
    meta = cell.get("metadata", {}).get("nbgrader", {})
    if not meta.get("grade"):
        return []
    found = (verdicts or {}).get(meta.get("grade_id"))
    text = verdict_text(found) if found is not None else NOT_GRADED
    return [NotebookNode(output_type="stream", name="stdout", text=text + "\n")]


def _check_grade_id(cell: NotebookNode) -> None:
    """Drop nbgrader metadata whose grade_id is not a plain name: the template writes it into the page as is."""
    meta = cell.get("metadata", {}).get("nbgrader")
    if isinstance(meta, dict) and meta.get("grade_id") is not None and not SAFE_GRADE_ID.match(str(meta["grade_id"])):
        cell.metadata.pop("nbgrader")


class _MemoryBytecodeCache(BytecodeCache):
    """Compiled Jinja templates kept for the life of the process, keyed by template name and source checksum."""

    def __init__(self) -> None:
        self._code: dict[str, bytes] = {}

    def load_bytecode(self, bucket) -> None:
        code = self._code.get(bucket.key)
        if code is not None:
            bucket.bytecode_from_string(code)

    def dump_bytecode(self, bucket) -> None:
        self._code[bucket.key] = bucket.bytecode_to_string()


class FeedbackExporter(HTMLExporter):
    """nbconvert's HTML exporter for feedback pages, without two costs that change nothing in them.

    * nbgrader makes a new exporter for every submission, which compiles its 27 templates again: here the
      compiled templates are kept for the worker's life (checked against each template's source).
    * nbconvert parses every page again with BeautifulSoup (pure Python: about 0.1 s for a 200 kB page) to give
      images ``alt`` text and JupyterLab-template elements a ``tabindex``, then writes it out again. A feedback
      page has no code outputs (``TrustedOutputs``), its markdown went through ``clean_html``, which adds the
      ``alt`` text, and nbgrader's feedback template has no JupyterLab elements: that pass has nothing to do.
    """

    _compiled = _MemoryBytecodeCache()

    def _create_environment(self):
        environment = super()._create_environment()
        environment.bytecode_cache = self._compiled
        return environment

    def from_notebook_node(self, nb: NotebookNode, resources: dict | None = None, **kw) -> tuple[str, dict]:
        # HTMLExporter.from_notebook_node up to its BeautifulSoup pass (nbconvert 7.17, pinned)
        langinfo = nb.metadata.get("language_info", {})
        lexer = langinfo.get("pygments_lexer", langinfo.get("name", None))
        highlight_code = self.filters.get("highlight_code", Highlight2HTML(pygments_lexer=lexer, parent=self))
        resources = self._init_resources(resources)
        filter_data_type = WidgetsDataTypeFilter(notebook_metadata=self._nb_metadata, parent=self, resources=resources)
        self.register_filter("highlight_code", highlight_code)
        self.register_filter("filter_data_type", filter_data_type)
        return TemplateExporter.from_notebook_node(self, nb, resources, **kw)
