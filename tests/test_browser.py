"""End to end in a real browser: the students' JupyterLab (``make lab``) driven in Debian's chromium.

One JupyterLab per module, started exactly as ``python -m grading lab`` starts it
(``prepare_workspace`` + ``lab_command``) in a temporary workspace on a free loopback port,
with a local nbgrader exchange. In it, for one notebook of every assignment in ``release/``:
the exercise instructions are shown, correct answers typed into the solution cells' editors
pass the visible tests after Run All, nbgrader's Validate says so, and a wrong answer makes
Validate show the course's teaching message. A lecture widget renders and answers a slider.
Through the Assignments panel, an assignment released by an instructor course is fetched,
validated and submitted, then collected and graded with ``python -m grading grade``.

Needs ``/usr/bin/chromium`` (``apt-get install -y chromium``) and the ``playwright`` Python
package; never ``playwright install``. On failure, screenshots, the page HTML and the server
log go to ``test-artifacts/browser/<test name>/`` (git-ignored).
"""

from __future__ import annotations

import csv
import getpass
import json
import os
import re
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import threading
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, grading, nbgrader, new_course

pytestmark = pytest.mark.browser

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_ARGS = ["--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
                 "--disable-background-networking", "--disable-component-update", "--disable-sync",
                 "--disable-dev-shm-usage"]
ARTIFACTS = REPO / "test-artifacts" / "browser"
COURSE_ID = "rnn-course"

# Timeouts (seconds unless *_MS).
SERVER_START = 90
UI_MS = 30_000            # any single UI step
KERNEL_MS = 60_000        # a kernel start (torch is imported later, by the cells)
RUN_ALL_MS = 120_000      # Run All of a solved notebook
VALIDATE_MS = 150_000     # nbgrader validate: a fresh kernel runs the whole notebook
INSTRUCTOR_PREP = 240     # new_course + release_assignment, in the background
GRADE = 600

# The notebook each assignment is tested with (any other assignment: its first notebook).
PREFERRED = {"rnn_basics": "rnn_cell", "hello_ohlol": "one_hot_rnn", "lstm_gru": "lstm", "char_lm": "poems"}


@dataclass(frozen=True)
class Wrong:
    """A wrong answer (an answer-catalogue entry) and what Validate must then show.

    ``expect``: every entry is a tuple of alternatives, one of which must appear in the dialog.
    """

    exercise: str
    key: str
    expect: tuple[tuple[str, ...], ...]


WRONG = {
    # The visible check names the equation (the hidden one says "missing the activation").
    ("rnn_basics", "rnn_cell"): Wrong("rnn_cell_step", "no_tanh",
                                      (("missing the activation", "h' = tanh(x @ weight_ih.T"),)),
    ("hello_ohlol", "one_hot_rnn"): Wrong("one_hot", "long", (("expected torch.float32",),)),
    ("hello_ohlol", "embedding_rnn"): Wrong("embedding_rnn", "no_head", (("no nn.Linear head",),)),
    # A gate (here the candidate g) is named.
    ("lstm_gru", "lstm"): Wrong("lstm_cell", "sigmoid_candidate", (("candidate",), ("g uses tanh",))),
    ("lstm_gru", "gru"): Wrong("gru_cell", "z_swapped", (("update gate",), ("not the other way",))),
    # The state handling of truncated BPTT is named from the calls the model received.
    ("char_lm", "poems"): Wrong("train_tbptt", "state_reset", (("reset every window",),)),
}


# --------------------------------------------------------------------------- course content


def released_assignments() -> list[str]:
    release = REPO / "release"
    if not release.is_dir():
        return []
    return sorted(d.name for d in release.iterdir() if d.is_dir() and any(d.glob("*.ipynb")))


def notebook_for(assignment: str) -> str:
    names = sorted(p.stem for p in (REPO / "release" / assignment).glob("*.ipynb"))
    preferred = PREFERRED.get(assignment)
    return preferred if preferred in names else names[0]


def _meta(cell) -> dict:
    return cell.metadata.get("nbgrader", {})


def strip_markers(source: str) -> str:
    """The source cell without its ``### BEGIN/END SOLUTION`` lines: the correct answer."""
    return "\n".join(line for line in source.splitlines()
                     if line.strip() not in ("### BEGIN SOLUTION", "### END SOLUTION")).rstrip() + "\n"


def first_line(source: str) -> str:
    return next(line for line in source.splitlines() if line.strip()).strip()


def markdown_text(line: str) -> str:
    """A markdown heading line as the browser renders it (no #, backticks, stars); "" with LaTeX."""
    return re.sub(r"[`*]", "", line.lstrip("#")).strip() if "$" not in line else ""


@dataclass
class Exercise:
    grade_id: str
    stub_first_line: str     # locates the solution cell in the page
    answer: str              # the source cell without its solution markers
    instructions: str        # the Part heading above it, as rendered


@dataclass
class NotebookPlan:
    assignment: str
    name: str
    exercises: list[Exercise]
    test_cells: list[tuple[str, str]]        # (grade_id, first line) of every visible test cell
    points: float = 0.0
    wrong: Wrong | None = None

    @property
    def path(self) -> str:
        return f"{self.assignment}/{self.name}.ipynb"


def plan(assignment: str, name: str) -> NotebookPlan:
    release_path = REPO / "release" / assignment / f"{name}.ipynb"
    source_path = REPO / "source" / assignment / f"{name}.ipynb"
    if not source_path.exists():
        pytest.fail(f"{release_path.relative_to(REPO)} has no source notebook {source_path.relative_to(REPO)}: "
                    "the correct answers come from source/")
    release = nbformat.read(release_path, as_version=4)
    source = {(_meta(c).get("grade_id")): c for c in nbformat.read(source_path, as_version=4).cells}
    exercises, tests, heading, points = [], [], "", 0.0
    for cell in release.cells:
        meta = _meta(cell)
        if cell.cell_type == "markdown":
            headings = [markdown_text(line) for line in cell.source.splitlines() if line.startswith("#")]
            heading = next((h for h in reversed(headings) if h), heading)
        if cell.cell_type != "code":
            continue
        if meta.get("solution"):
            gid = meta["grade_id"]
            if gid not in source:
                pytest.fail(f"{source_path.relative_to(REPO)} has no solution cell {gid!r}")
            exercises.append(Exercise(gid, first_line(cell.source), strip_markers(source[gid].source), heading))
        elif meta.get("grade"):
            tests.append((meta["grade_id"], first_line(cell.source)))
            points += float(meta.get("points", 0))
    assert exercises, f"{release_path.relative_to(REPO)} has no solution cell"
    assert tests, f"{release_path.relative_to(REPO)} has no visible test cell"
    return NotebookPlan(assignment, name, exercises, tests, points, WRONG.get((assignment, name)))


def wrong_source(plan_: NotebookPlan) -> tuple[str, str]:
    """(grade_id, source) of the wrong answer used for Validate: the catalogue's, or an answer that raises."""
    from grading.instructor.catalogue import answers_for

    wrong = plan_.wrong
    if wrong is not None:
        entry = next((a for a in answers_for(wrong.exercise, correct=False) if a.key == wrong.key), None)
        assert entry is not None, f"answer catalogue: no wrong answer {wrong.key!r} of {wrong.exercise!r}"
        return wrong.exercise, entry.source
    for ex in plan_.exercises:
        entries = answers_for(ex.grade_id, correct=False)
        if entries:
            return ex.grade_id, entries[0].source
    ex = plan_.exercises[0]
    return ex.grade_id, ex.answer.replace(ex.stub_first_line, ex.stub_first_line + "\n    raise ValueError('wrong')", 1)


# --------------------------------------------------------------------------- the lab server


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Lab:
    tmp: Path
    workspace: Path
    exchange: Path
    base: str
    token: str
    proc: subprocess.Popen
    log: Path
    instructor: Instructor

    def url(self, path: str = "") -> str:
        sep = "&" if "?" in path else "?"
        return f"{self.base}/{path}{sep}token={self.token}"

    def request(self, method: str, path: str, timeout: float = 10) -> bytes:
        req = urllib.request.Request(f"{self.base}/{path}", method=method,
                                     headers={"Authorization": f"token {self.token}"})
        with urllib.request.urlopen(req, timeout=timeout) as resp:
            return resp.read()

    def api(self, method: str, path: str, timeout: float = 10):
        body = self.request(method, f"api/{path}", timeout)
        return json.loads(body) if body else None

    def shutdown_kernels(self) -> None:
        try:
            for kernel in self.api("GET", "kernels"):
                self.api("DELETE", f"kernels/{kernel['id']}", timeout=30)
        except (urllib.error.URLError, OSError):
            pass

    def log_tail(self, chars: int = 6000) -> str:
        try:
            return self.log.read_text(errors="replace")[-chars:]
        except OSError:
            return ""


class Instructor(threading.Thread):
    """In the background: an instructor course with this repository's source, its own
    ``c.Exchange.root``, and ``assignment`` released to the exchange."""

    def __init__(self, root: Path, exchange: Path, assignment: str):
        super().__init__(daemon=True, name="instructor-course")
        self.root, self.exchange, self.assignment = root, exchange, assignment
        self.error: BaseException | None = None

    def run(self) -> None:
        try:
            new_course(self.root, [self.assignment])
            with open(self.root / "nbgrader_config.py", "a") as f:
                f.write(f"\nc.Exchange.root = {str(self.exchange)!r}\n")
            nbgrader("release_assignment", self.assignment, root=self.root)
        except BaseException as exc:  # pytest.fail raises a BaseException; re-raised in the test
            self.error = exc

    def ready(self) -> Path:
        self.join(INSTRUCTOR_PREP)
        if self.is_alive():
            pytest.fail(f"the instructor course (new_course + nbgrader release_assignment) "
                        f"took over {INSTRUCTOR_PREP} s")
        if self.error is not None:
            raise self.error
        return self.root


def stop(proc: subprocess.Popen, timeout: float = 20) -> None:
    """Stop the server by its PID (its kernels live in its process group, which has the same id)."""
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=timeout)
        except subprocess.TimeoutExpired:
            pass
    try:
        os.killpg(proc.pid, signal.SIGKILL)  # kernels left behind, if any; the group id is the server's PID
    except (ProcessLookupError, PermissionError):
        pass
    if proc.poll() is None:
        proc.wait(timeout=10)


def require_chromium() -> None:
    if not CHROMIUM.exists():
        pytest.fail(f"{CHROMIUM} is missing: the browser tests drive Debian's chromium. "
                    "Install it with `apt-get install -y chromium` (do not run `playwright install`).")


def wait_for_server(server: Lab, cmd: list[str]) -> bool:
    """True once /api/status answers; False if the port was taken; fails on any other exit or a timeout."""
    deadline = time.monotonic() + SERVER_START
    while True:
        if server.proc.poll() is not None:
            log = server.log_tail()
            if "already in use" in log:
                return False
            pytest.fail(f"JupyterLab (lab_command) exited with code {server.proc.returncode} before serving:\n"
                        f"{' '.join(cmd).replace(server.token, '<token>')}\n--- server log ---\n{log}")
        try:
            server.api("GET", "status", timeout=2)
            return True
        except (urllib.error.URLError, OSError):
            if time.monotonic() > deadline:
                pytest.fail(f"JupyterLab did not answer /api/status within {SERVER_START} s\n{server.log_tail()}")
            time.sleep(0.25)


@pytest.fixture(scope="module")
def lab():
    from grading.instructor.bundle import lab_command, prepare_workspace

    require_chromium()  # before starting anything
    assignments = released_assignments()
    if not assignments:
        pytest.fail("release/ holds no assignment")
    tmp = Path(tempfile.mkdtemp(prefix="rnn-browser-"))
    proc = None
    instructor = None
    try:
        exchange = tmp / "exchange"
        exchange.mkdir()
        exchange.chmod(0o777)  # nbgrader's exchange refuses a root that is not world-writable
        target = "rnn_basics" if "rnn_basics" in assignments else assignments[0]
        instructor = Instructor(tmp / "instructor", exchange, target)
        instructor.start()
        workspace = prepare_workspace(REPO, tmp / "workspace", exchange)
        token = secrets.token_hex(16)
        for attempt in range(3):  # another process may take the free port before the server binds it
            port = free_port()
            cmd, env = lab_command(workspace, port, token)
            assert env["JUPYTER_CONFIG_DIR"].startswith(str(tmp)) and env["JUPYTER_RUNTIME_DIR"].startswith(str(tmp))
            log = tmp / f"lab-{attempt}.log"
            with open(log, "wb") as out:
                proc = subprocess.Popen(cmd, cwd=workspace, env=env, stdout=out, stderr=subprocess.STDOUT,
                                        stdin=subprocess.DEVNULL, start_new_session=True)
            server = Lab(tmp, workspace, exchange, f"http://127.0.0.1:{port}", token, proc, log, instructor)
            if wait_for_server(server, cmd):
                break
            stop(proc)
        else:
            pytest.fail(f"JupyterLab found its port taken 3 times\n{server.log_tail()}")
        yield server
    finally:
        if proc is not None:
            stop(proc)
        if instructor is not None:
            instructor.join(INSTRUCTOR_PREP)
        shutil.rmtree(tmp, ignore_errors=True)


# --------------------------------------------------------------------------- the browser


class _Outcomes:
    """Records each test's call-phase report, so that a fixture can tell a failure at teardown."""

    def __init__(self):
        self.failed: set[str] = set()

    @pytest.hookimpl(wrapper=True)
    def pytest_runtest_makereport(self, item, call):
        report = yield
        if report.failed:
            self.failed.add(item.nodeid)
        return report


@pytest.fixture(scope="module")
def outcomes(request):
    plugin = _Outcomes()
    name = f"browser-outcomes-{id(plugin)}"
    request.config.pluginmanager.register(plugin, name)
    yield plugin
    request.config.pluginmanager.unregister(name=name)


@pytest.fixture(scope="module")
def browser(lab, outcomes):
    require_chromium()
    try:
        from playwright.sync_api import expect, sync_playwright
    except ImportError:
        pytest.fail("the `playwright` Python package is missing: .venv/bin/pip install -r requirements.txt")
    expect.set_options(timeout=UI_MS)
    with sync_playwright() as p:
        context = p.chromium.launch_persistent_context(
            str(lab.tmp / "chromium-profile"), executable_path=str(CHROMIUM), headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1440, "height": 1000}, timeout=60_000)
        context.set_default_timeout(UI_MS)
        context.set_default_navigation_timeout(60_000)
        try:
            yield context
        finally:
            context.close()


def artifact_dir(name: str) -> Path:
    return ARTIFACTS / re.sub(r"[^\w.\-\[\]]+", "_", name)


@pytest.fixture
def page(request, lab, browser, outcomes):
    """A fresh tab; on failure, screenshots of every open tab, its HTML and the server log."""
    folder = artifact_dir(request.node.name)
    shutil.rmtree(folder, ignore_errors=True)
    tab = browser.new_page()
    messages: list[str] = []
    tab.on("console", lambda m: messages.append(f"[{m.type}] {m.text}"))
    tab.on("pageerror", lambda e: messages.append(f"[pageerror] {e}"))
    yield tab
    if request.node.nodeid in outcomes.failed:
        folder.mkdir(parents=True, exist_ok=True)
        for i, open_page in enumerate(p for p in browser.pages if not p.is_closed()):
            try:
                open_page.screenshot(path=str(folder / f"page{i}.png"), timeout=10_000)
                (folder / f"page{i}.html").write_text(open_page.content())
            except Exception as exc:  # best effort: the test already failed
                (folder / f"page{i}.error.txt").write_text(repr(exc))
        (folder / "console.txt").write_text("\n".join(messages))
        (folder / "server.log").write_text(lab.log_tail(200_000))
    tab.close()
    lab.shutdown_kernels()


# --------------------------------------------------------------------------- JupyterLab helpers


def open_lab(page, lab: Lab, name: str | None, path: str | None = None) -> None:
    """Open JupyterLab in its own workspace ``name`` (no layout left over from another test; None: the
    default workspace, which no other test uses), optionally a notebook, and wait until all its cells are in
    the page."""
    tree = f"/tree/{path}" if path else ""
    page.goto(lab.url(f"lab/workspaces/{name}{tree}?reset" if name else f"lab{tree}"))
    page.locator("#jupyterlab-splash").wait_for(state="detached", timeout=60_000)
    if path:
        wait_cells(page, lab.workspace / path)


def wait_cells(page, path: Path) -> None:
    from playwright.sync_api import expect

    count = len(nbformat.read(path, as_version=4).cells)
    expect(notebook(page).locator(".jp-Cell")).to_have_count(count)


def notebook(page):
    """The notebook panel in front."""
    return page.locator(".jp-NotebookPanel:not(.lm-mod-hidden)")


def wait_kernel_ready(page) -> None:
    panel = notebook(page)
    panel.locator('jp-button.jp-DebuggerBugButton[aria-disabled="false"]').wait_for(timeout=KERNEL_MS)
    panel.locator('.jp-Notebook-ExecutionIndicator[data-status="idle"]').wait_for(timeout=KERNEL_MS)


def code_cell(page, first: str):
    cells = notebook(page).locator(".jp-CodeCell").filter(has_text=first)
    count = cells.count()
    assert count == 1, f"{count} code cells contain {first!r}"
    return cells


def type_into(page, cell, text: str) -> None:
    """Replace a cell's source through its CodeMirror editor: click, select all, insert."""
    editor = cell.locator(".cm-content")
    editor.scroll_into_view_if_needed()
    editor.click()
    page.keyboard.press("ControlOrMeta+a")
    page.keyboard.insert_text(text)
    assert editor_text(cell).strip() == text.strip(), f"the editor holds\n{editor_text(cell)}\ninstead of\n{text}"


def editor_text(cell) -> str:
    """The source shown in a cell's CodeMirror editor, one ``.cm-line`` per line."""
    lines = cell.locator(".cm-content .cm-line").all_text_contents()
    return "\n".join(line.replace("\u00a0", " ").replace("\n", "").rstrip() for line in lines)


def press_menu(page, menu: str, command: str) -> None:
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(rf"^{menu}$")).click()
    page.locator(f'.lm-Menu li[data-command="{command}"]').click()


RUN_FINISHED = """() => {
  const panel = document.querySelector('.jp-NotebookPanel:not(.lm-mod-hidden)');
  const prompts = [...panel.querySelectorAll('.jp-CodeCell .jp-InputPrompt')].map(p => p.textContent);
  if (!prompts.length || prompts.some(p => p.includes('*'))) return false;
  const error = [...panel.querySelectorAll('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')]
    .some(o => /Error|Traceback/.test(o.textContent));
  return /\\d/.test(prompts[prompts.length - 1]) || error;
}"""


def run_all(page) -> None:
    press_menu(page, "Run", "runmenu:run-all")
    page.wait_for_function(RUN_FINISHED, timeout=RUN_ALL_MS, polling=250)


def errors_in_notebook(page) -> list[str]:
    outputs = notebook(page).locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
    return [t for t in outputs.all_text_contents() if re.search(r"Error|Traceback", t)]


def validate(page, success: bool) -> str:
    """Press nbgrader's Validate in the notebook toolbar; return the dialog's text, closing it."""
    notebook(page).locator(".jp-NotebookPanel-toolbar jp-button.validate-button").click()
    return read_dialog(page, success)


def read_dialog(page, success: bool) -> str:
    dialog = page.locator(".jp-Dialog.nbgrader-SuccessDialog, .jp-Dialog.nbgrader-ErrorDialog")
    dialog.wait_for(timeout=VALIDATE_MS)
    text = dialog.locator(".jp-Dialog-content").inner_text()
    kind = "success" if "nbgrader-SuccessDialog" in (dialog.get_attribute("class") or "") else "error"
    dialog.locator("button.jp-Dialog-button").last.click()
    dialog.wait_for(state="detached")
    assert kind == ("success" if success else "error"), f"Validate showed a {kind} dialog:\n{text}"
    return text


def saved_sources(path: Path) -> dict[str, str]:
    nb = nbformat.read(path, as_version=4)
    return {_meta(c)["grade_id"]: c.source for c in nb.cells if _meta(c).get("solution")}


def answer_notebook(page, plan_: NotebookPlan) -> None:
    for ex in plan_.exercises:
        type_into(page, code_cell(page, ex.stub_first_line), ex.answer)


# --------------------------------------------------------------------------- tests


@pytest.mark.parametrize("assignment", released_assignments())
def test_student_solves_and_validates(lab, page, assignment):
    """Instructions shown; correct answers typed in pass the visible tests and Validate; a wrong one is explained."""
    from playwright.sync_api import expect

    p = plan(assignment, notebook_for(assignment))
    open_lab(page, lab, f"solve-{assignment}", f"assignments/{p.path}")

    # The exercise instructions and the stubs are shown.
    for ex in p.exercises:
        cell = code_cell(page, ex.stub_first_line)
        expect(cell).to_contain_text("raise NotImplementedError()")
        if ex.instructions:
            heading = notebook(page).locator(".jp-MarkdownCell .jp-RenderedMarkdown").filter(has_text=ex.instructions)
            expect(heading.first).to_be_attached()
            heading.first.scroll_into_view_if_needed()
            expect(heading.first).to_be_visible()

    wait_kernel_ready(page)
    answer_notebook(page, p)
    run_all(page)

    errors = errors_in_notebook(page)
    assert not errors, f"{p.path}: errors after Run All with the correct answers:\n" + "\n---\n".join(errors)
    for gid, first in p.test_cells:
        cell = code_cell(page, first)
        expect(cell.locator(".jp-InputPrompt")).to_contain_text(re.compile(r"\d"))
        stderr = cell.locator('.jp-OutputArea-output[data-mime-type="application/vnd.jupyter.stderr"]')
        assert stderr.count() == 0, f"{p.path}: test cell {gid} wrote to stderr:\n{stderr.all_text_contents()}"
        expect(cell.locator(".jp-OutputArea")).to_contain_text("passed")
    outputs = notebook(page).locator(".jp-OutputArea").all_text_contents()
    assert any(re.search(r"(visible|shape|value) checks passed", t) for t in outputs), outputs

    text = validate(page, success=True)
    print(f"Validate, {p.path}, correct answers:\n{text}")
    assert "passes all the tests" in text, text
    saved = saved_sources(lab.workspace / "assignments" / p.path)
    for ex in p.exercises:
        assert saved[ex.grade_id].strip() == ex.answer.strip(), (
            f"{ex.grade_id}: the saved cell differs from what was typed")

    gid, source = wrong_source(p)
    wrong_ex = next(ex for ex in p.exercises if ex.grade_id == gid)
    type_into(page, code_cell(page, first_line(wrong_ex.answer)), source)
    text = validate(page, success=False)
    print(f"Validate, {p.path}, wrong {gid}:\n{text}")
    assert re.search(r"following cells? failed", text), text
    for alternatives in (p.wrong.expect if p.wrong else ()):
        assert any(a in text for a in alternatives), f"Validate's error dialog lacks any of {alternatives}:\n{text}"
    assert saved_sources(lab.workspace / "assignments" / p.path)[gid].strip() == source.strip()


def test_lecture_widget_responds(lab, page):
    """The hidden-state explorer of lecture 01 renders, and moving its slider t changes the view."""
    from playwright.sync_api import expect

    open_lab(page, lab, "widget", "lectures/01_rnn_basics.ipynb")
    wait_kernel_ready(page)
    setup, explorer = code_cell(page, "# Run this cell first"), code_cell(page, "W.hidden_state_explorer()")
    for cell in (setup, explorer):
        cell.locator(".cm-content").click()
        page.keyboard.press("Shift+Enter")
    # The lecture is committed with outputs and widget state: wait for this kernel's own run ([2]), whose
    # view only a live kernel can update.
    expect(explorer.locator(".jp-InputPrompt")).to_have_text(re.compile(r"\[2\]"), timeout=60_000)
    output = explorer.locator(".jp-OutputArea-output")
    slider = output.locator(".widget-slider").first
    expect(slider).to_be_visible(timeout=UI_MS)
    expect(slider.locator(".widget-label")).to_have_text("t")
    readout = slider.locator(".widget-readout")
    expect(readout).to_have_text("1")
    expect(output).to_contain_text("h1 = [")
    before = output.locator("pre").inner_text()

    slider.locator(".noUi-handle").focus()
    page.keyboard.press("ArrowRight")
    expect(readout).to_have_text("2")
    expect(output).to_contain_text("h2 = [")
    assert output.locator("pre").inner_text() != before
    assert not errors_in_notebook(page)


def test_assignment_fetched_validated_submitted_and_graded(lab, page):
    """Assignments panel: fetch the released assignment, answer one notebook, Validate, Submit;
    the instructor collects and grades it."""
    from playwright.sync_api import expect

    course = lab.instructor.ready()
    a = lab.instructor.assignment
    p = plan(a, notebook_for(a))
    others = sorted(x.stem for x in (REPO / "release" / a).glob("*.ipynb") if x.stem != p.name)

    # Not "?reset": the panel's expand links (href="#id") change the URL, and JupyterLab, routing it again,
    # would reset the layout and close the panel.
    open_lab(page, lab, None)
    page.locator("#jp-MainMenu .lm-MenuBar-item", has_text=re.compile(r"^Nbgrader$")).click()
    for instructor_only in ("open-formgrader", "open-formgrader-local", "open-course-list", "open-create-assignment"):
        item = page.locator(f'.lm-Menu li[data-command="nbgrader:{instructor_only}"]:not(.lm-mod-hidden)')
        expect(item).to_have_count(0)
    page.locator('.lm-Menu li[data-command="nbgrader:open-assignment-list"]').click()
    with pytest.raises(urllib.error.HTTPError, match="404"):
        lab.request("GET", "formgrader")  # the formgrader server extension is off too
    released = page.locator("#released_assignments_list > .list_item").filter(
        has=page.locator(".item_name", has_text=re.compile(rf"^{a}$")))
    expect(released).to_have_count(1)
    expect(released.locator(".item_course")).to_have_text(COURSE_ID)
    released.locator(".item_status button").click()

    fetched = page.locator("#fetched_assignments_list > .list_item").filter(
        has=page.locator(".item_name", has_text=re.compile(rf"^{a}$")))
    expect(fetched).to_have_count(1)
    assert (lab.workspace / a / f"{p.name}.ipynb").exists(), "Fetch did not write the notebooks into the workspace"
    page.locator("#fetched_assignments_list a", has_text=re.compile(rf"^{a}$")).click()
    row = page.locator("#fetched_assignments_list .assignment-notebooks .list_item").filter(
        has=page.locator(".item_name", has_text=re.compile(rf"^{p.name}$")))
    expect(row).to_have_count(1)

    # Open the fetched notebook from the panel, answer it in the editor, save.
    row.locator(".item_name a").click()
    wait_cells(page, lab.workspace / a / f"{p.name}.ipynb")
    answer_notebook(page, p)
    page.keyboard.press("ControlOrMeta+s")
    path = lab.workspace / a / f"{p.name}.ipynb"
    deadline = time.monotonic() + UI_MS / 1000
    want = {ex.grade_id: ex.answer.strip() for ex in p.exercises}
    while {k: v.strip() for k, v in saved_sources(path).items()} != want:
        if time.monotonic() > deadline:
            got = saved_sources(path)
            pytest.fail(f"{path.name} was not saved with the typed answers: {got}")
        time.sleep(0.25)

    page.locator(".lm-TabBar-tab", has_text="Assignments").click()
    row.locator(".item_status button", has_text="Validate").click()
    text = read_dialog(page, success=True)
    assert "passes all the tests" in text, text

    fetched.locator(".item_status button", has_text="Submit").click()
    submitted = page.locator("#submitted_assignments_list > .list_item").filter(
        has=page.locator(".item_name", has_text=re.compile(rf"^{a}$")))
    expect(submitted).to_have_count(1)
    inbound = lab.exchange / COURSE_ID / "inbound"
    assert any(inbound.iterdir()), "Submit left nothing in the exchange's inbound folder"

    # The instructor collects and grades it.
    student = getpass.getuser()  # nbgrader's exchange files a submission under the OS user
    nbgrader("collect", a, root=course)
    assert (course / "submitted" / student / a / f"{p.name}.ipynb").exists()
    grading("grade", a, root=course, timeout=GRADE)
    from nbgrader.api import Gradebook

    with Gradebook(f"sqlite:///{course / 'gradebook.db'}", COURSE_ID) as gb:
        sub = gb.find_submission(a, student)
        scores = {nb.name: (nb.score, nb.max_score) for nb in sub.notebooks}
    assert scores[p.name] == (p.points, p.points), scores
    for other in others:
        assert scores[other][0] == 0, f"{other} was submitted unanswered, yet scored: {scores}"
    with open(course / "reports" / "grades.csv", newline="") as f:
        rows = {r["student"]: r for r in csv.DictReader(f)}
    assert float(rows[student][f"{a}/{p.name}"]) == p.points, rows[student]
    assert float(rows[student]["total"]) == p.points, rows[student]
