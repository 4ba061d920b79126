"""The similarity report: a disguised copy is flagged among independently written answers, and nothing else.

No kernel runs here: the report reads submitted/ and the release, so each test builds its own course from the
repository's release (kept up to date by test_release.py) and writes the submissions itself.
"""

from __future__ import annotations

import argparse
import ast
import datetime
import html
import itertools
import json
import random
import re
import shutil
from pathlib import Path

import nbformat
import pytest

from conftest import REPO, assignment_names
from grading.instructor import similarity
from grading.instructor.catalogue import ANSWERS, answers_for
from grading.instructor.course import CourseError
from grading.instructor.exercises import EXERCISES
from grading.instructor.sample_class import PLANTED_COPY, PLANTED_STYLES, roster, submission_notebook, write_class
from grading.instructor.variation import vary

# The source's answers in the test class: correct styles with the least in common with the rest of the catalogue.
SOURCE_STYLES = {"embedding_rnn": "reference", "one_hot": "lookup_table", "one_hot_rnn_head": "explicit_h0",
                 **PLANTED_STYLES}
HONEST = 12


def course_root(tmp_path: Path, names: list[str] | None = None) -> Path:
    """A course root with the repository's config, source/ and release/ (all assignments or ``names``)."""
    root = tmp_path / "course"
    root.mkdir()
    shutil.copy2(REPO / "nbgrader_config.py", root / "nbgrader_config.py")
    for name in names or assignment_names():
        shutil.copytree(REPO / "source" / name, root / "source" / name)
        shutil.copytree(REPO / "release" / name, root / "release" / name)
    return root


def releases(root: Path, assignment: str) -> dict[str, nbformat.NotebookNode]:
    return {p.stem: nbformat.read(p, as_version=4) for p in sorted((root / "release" / assignment).glob("*.ipynb"))}


def hand_in(root: Path, assignment: str, student: str, code: dict[str, str]) -> Path:
    """submitted/<student>/<assignment>/: every release notebook, with ``code`` in its solution cells."""
    folder = root / "submitted" / student / assignment
    folder.mkdir(parents=True, exist_ok=True)
    for name, release in releases(root, assignment).items():
        nbformat.write(submission_notebook(release, code), folder / f"{name}.ipynb")
    return folder


def exercises_of(assignment: str) -> list[str]:
    return sorted(g for g, ex in EXERCISES.items() if ex.assignment == assignment)


def shape(code: str) -> list[str]:
    """The code's statements with names and comments blotted out: equal shapes, equal statements."""
    lines = [re.sub(r"#.*", "", line) for line in code.splitlines()]
    return [re.sub(r"[A-Za-z_]\w*", "V", line).strip() for line in lines if line.strip()]


def comments(code: str) -> list[str]:
    return re.findall(r"#.*", code)


def independent_class(root: Path, assignment: str) -> dict[str, dict[str, str]]:
    """Independently written correct answers, each student in their own hand, and one disguised copy.

    Honest students take the catalogue's correct styles (each pair shares at most one exercise's style, as
    students who worked alone would); ``source`` wrote the styles of SOURCE_STYLES, which no honest student
    took; ``copier`` hands in source's work with variables renamed, statements reordered, comments changed.
    """
    exercises = exercises_of(assignment)
    good = {g: answers_for(g, correct=True) for g in exercises}
    pool = [[a for a in good[g] if a.key != SOURCE_STYLES[g]] for g in exercises]
    combos = list(itertools.product(*pool))
    random.Random(assignment).shuffle(combos)
    chosen: list[tuple] = []
    for combo in combos:
        if len(chosen) < HONEST and all(sum(a is b for a, b in zip(combo, c, strict=True)) <= 1 for c in chosen):
            chosen.append(combo)
    students = {f"honest{i + 1:02d}": dict(zip(exercises, combo, strict=True)) for i, combo in enumerate(chosen)}
    students["source"] = {g: next(a for a in good[g] if a.key == SOURCE_STYLES[g]) for g in exercises}
    code = {sid: {g: vary(a.source, f"{sid}/{g}") for g, a in answers.items()} for sid, answers in students.items()}
    code["copier"] = {g: vary(text, f"copier/{g}", another_order=True) for g, text in code["source"].items()}
    for sid, cells in code.items():
        hand_in(root, assignment, sid, cells)
    return code


def assert_disguised(original: dict[str, str], copy: dict[str, str], reordered: bool = True) -> None:
    """The copy has other names and comments, and (``reordered``) one exercise's statements in another order."""
    assert all(copy[g] != original[g] for g in original)
    assert any(comments(copy[g]) != comments(original[g]) for g in original)
    names = {g: {n.id for n in ast.walk(ast.parse(original[g])) if isinstance(n, ast.Name)} for g in original}
    assert any({n.id for n in ast.walk(ast.parse(copy[g])) if isinstance(n, ast.Name)} != names[g] for g in original)
    moved = [g for g in original if shape(copy[g]) != shape(original[g])
             and sorted(shape(copy[g])) == sorted(shape(original[g]))]
    assert moved or not reordered, "no exercise of the copy has its statements in another order"


# hello_ohlol's answers call their modules in every statement: nothing there can provably change places.
@pytest.mark.parametrize(("assignment", "reordered"), [("hello_ohlol", False), ("lstm_gru", True)])
def test_a_disguised_copy_among_independent_correct_answers_is_the_only_pair(tmp_path, assignment, reordered):
    root = course_root(tmp_path, [assignment])
    code = independent_class(root, assignment)
    assert len(code) >= 10  # at least 8 honest students (the catalogue's styles allow 9 in hello_ohlol)
    assert_disguised(code["source"], code["copier"], reordered)
    result = similarity.similarity_report(root, assignment)
    assert [(p.first, p.second) for p in result.pairs] == [("copier", "source")], result.scores[:3]
    planted = result.pairs[0]
    assert planted.score >= similarity.THRESHOLD and set(planted.exercises) == set(exercises_of(assignment))
    honest = [p for p in result.scores if p is not planted]
    assert len(honest) == len(code) * (len(code) - 1) // 2 - 1
    assert max(p.score for p in honest) < similarity.THRESHOLD - 0.1  # a margin, not a near miss
    assert result.path == root / "reports" / f"similarity-{assignment}.html"
    page = result.path.read_text()
    assert "for a human to review" in page and "no verdict" in page
    assert page.count("data:image/png;base64,") == 1 and "<mark>" in page
    assert "<h3>copier and source: score" in page


def test_starter_code_alone_is_never_a_match(tmp_path):
    assignment = "lstm_gru"
    root = course_root(tmp_path, [assignment])
    starter = {c.metadata["nbgrader"]["grade_id"]: c.source for nb in releases(root, assignment).values()
               for c in nb.cells if c.metadata.get("nbgrader", {}).get("solution")}
    assert all(similarity.own_code(text, text) == "" for text in starter.values())
    for student in ("blank1", "blank2"):  # the release as it is
        hand_in(root, assignment, student, {})
    # The stub reshuffled: the placeholder lines deleted, or `pass` typed in: no code of one's own either.
    hand_in(root, assignment, "stub1", {g: t.replace("        raise NotImplementedError()\n", "") for g, t in
                                        starter.items()})
    hand_in(root, assignment, "stub2", {g: t.replace("raise NotImplementedError()", "pass") for g, t in
                                        starter.items()})
    independent_class(root, assignment)
    result = similarity.similarity_report(root, assignment)
    assert {"blank1", "blank2", "stub1", "stub2"} <= set(result.not_compared)
    assert not {p.first for p in result.scores} & {"blank1", "blank2", "stub1", "stub2"}
    assert [(p.first, p.second) for p in result.pairs] == [("copier", "source")]
    assert "too little own code" in html.unescape(result.path.read_text())


def test_a_class_of_blank_submissions_has_no_pair(tmp_path):
    root = course_root(tmp_path, ["rnn_basics"])
    for student in ("a", "b", "c"):
        hand_in(root, "rnn_basics", student, {})
    result = similarity.similarity_report(root, "rnn_basics")
    assert result.scores == [] and result.pairs == [] and sorted(result.not_compared) == ["a", "b", "c"]
    assert "None." in result.path.read_text()


def test_malformed_notebooks_do_not_stop_the_report(tmp_path):
    assignment = "lstm_gru"
    root = course_root(tmp_path, [assignment])
    independent_class(root, assignment)
    names = sorted(releases(root, assignment))
    (hand_in(root, assignment, "broken", {}) / f"{names[0]}.ipynb").write_text('{"cells": [ not json')
    (hand_in(root, assignment, "no_nbformat", {}) / f"{names[1]}.ipynb").write_text('{"cells": []}')
    (hand_in(root, assignment, "missing", {}) / f"{names[0]}.ipynb").unlink()
    folder = hand_in(root, assignment, "deep", {})
    (folder / f"{names[0]}.ipynb").write_text("[" * 100_000)
    (root / "submitted" / "linked").mkdir()
    (root / "submitted" / "linked" / assignment).symlink_to(root / "submitted" / "source" / assignment)
    weird = hand_in(root, assignment, "weird_cells", {})
    nb = nbformat.read(weird / f"{names[1]}.ipynb", as_version=4)
    for cell in nb.cells:
        if cell.metadata.get("nbgrader", {}).get("solution"):
            cell.source = "\udcff" + "x = (" * 5000  # a lone surrogate, a syntax error, a long line
    (weird / f"{names[1]}.ipynb").write_text(json.dumps(nb))  # the surrogate as a JSON escape, as a file can hold it
    result = similarity.similarity_report(root, assignment)
    assert [(p.first, p.second) for p in result.pairs] == [("copier", "source")]
    notes = "\n".join(result.notes)
    for student in ("broken", "no_nbformat", "missing", "deep", "linked"):
        assert f"{student}: " in notes, student
    assert "linked" not in result.compared and "could be read" in result.not_compared["linked"]
    page = html.unescape(result.path.read_text())
    assert "not valid JSON" in page and "symbolic link" in page


def test_the_page_escapes_student_code_and_names(tmp_path):
    assignment = "hello_ohlol"
    root = course_root(tmp_path, [assignment])
    code = independent_class(root, assignment)
    hostile = "# </script><script>alert(1)</script><img src=x onerror=alert(2)>\n"
    source = {g: text.replace("\n", "\n" + " " * 4 + hostile.strip() + "\n", 1) for g, text in code["source"].items()}
    for text in source.values():
        ast.parse(text)
    hand_in(root, assignment, "source", source)
    hand_in(root, assignment, '<b onmouseover="x()">eve', source)  # a copy under a hostile folder name
    result = similarity.similarity_report(root, assignment)
    flagged = {(p.first, p.second) for p in result.pairs}  # three who shared their work: every pair of them
    assert flagged == {('<b onmouseover="x()">eve', "copier"), ('<b onmouseover="x()">eve', "source"),
                       ("copier", "source")}
    page = result.path.read_text()
    assert "<script" not in page and "<img src=x" not in page and "<b onmouseover" not in page
    assert "&lt;/script&gt;&lt;script&gt;alert(1)&lt;/script&gt;&lt;img src=x onerror=alert(2)&gt;" in page
    assert "&lt;b onmouseover=&quot;x()&quot;&gt;eve" in page
    tags = set(re.findall(r"</?([!\w]+)", page))  # only the page's own markup
    assert tags <= {"!doctype", "html", "head", "meta", "title", "style", "body", "h1", "h2", "h3", "h4", "p", "b",
                    "table", "tr", "th", "td", "pre", "mark", "img"}, tags


def test_the_sample_class_flags_exactly_the_planted_copy(tmp_path):
    root = course_root(tmp_path)
    classes = roster(assignment_names(), 32)
    write_class(root, classes)
    planted_assignment, source, copier = PLANTED_COPY
    by_id = {s.student_id: s for s in classes[planted_assignment]}
    assert by_id[copier].answers == by_id[source].answers
    assert_disguised(by_id[source].code(), by_id[copier].code())
    others = [s for s in classes[planted_assignment] if s.student_id not in (source, copier)]
    for g, key in PLANTED_STYLES.items():  # the source's answers are its own: nobody else wrote them
        assert by_id[source].answers[g].key == key and all(key != s.answers.get(g, ANSWERS[0]).key for s in others)
    for assignment in assignment_names():
        result = similarity.similarity_report(root, assignment)
        expected = [tuple(sorted((source, copier)))] if assignment == planted_assignment else []
        assert [(p.first, p.second) for p in result.pairs] == expected, (assignment, result.scores[:3])
        assert len(result.compared) >= 30 and "student05" in result.not_compared  # the blank student
        honest = [p.score for p in result.scores if (p.first, p.second) not in expected]
        assert max(honest) < similarity.THRESHOLD - 0.1, assignment


def test_students_hand_in_the_catalogue_answers_in_their_own_hand():
    classes = roster(assignment_names(), 32)
    for students in classes.values():
        for student in students:
            assert student.code().keys() == student.answers.keys()
            assert sum(student.code()[g] != a.source for g, a in student.answers.items()) >= len(student.answers) // 2
    same = [(a, b) for students in classes.values() for x, y in itertools.combinations(students, 2)
            for a, b in [(x.student_id, y.student_id)] if x.answers and x.code() == y.code()]
    assert not same, same


@pytest.mark.parametrize("student", ["student01", "student12", "student27"])
def test_the_variation_keeps_the_code(student):
    """Every catalogue answer in a student's hand: it parses, defines the same things, uses the same attributes,
    keywords and parameters, and only its locals change names (the grades: tests/test_sample_class.py)."""
    changed = 0
    for answer in ANSWERS:
        seed = f"{student}/{answer.exercise}"
        varied = vary(answer.source, seed, reorder=answer.correct, keep=set(re.findall(r"\w+", answer.message)))
        assert varied == vary(answer.source, seed, reorder=answer.correct,
                              keep=set(re.findall(r"\w+", answer.message)))  # deterministic
        before, after = ast.parse(answer.source), ast.parse(varied)
        compile(varied, answer.key, "exec")
        for kind in (ast.FunctionDef, ast.ClassDef, ast.Attribute, ast.keyword, ast.arg, ast.Constant):
            assert sorted(map(_label, _nodes(before, kind))) == sorted(map(_label, _nodes(after, kind))), \
                (answer.exercise, answer.key, kind.__name__)
        assert len(_nodes(before, ast.Name)) == len(_nodes(after, ast.Name))
        forbidden = EXERCISES[answer.exercise].forbidden_names or ()
        new_names = {n.id for n in _nodes(after, ast.Name)} - {n.id for n in _nodes(before, ast.Name)}
        assert not new_names & set(forbidden), answer.key
        if not answer.correct:  # a wrong answer is never reordered: its failure stays the same
            assert shape(varied) == shape(answer.source) or "#" in answer.source, answer.key
        changed += varied != answer.source
    assert changed == len(ANSWERS)


def _nodes(tree: ast.AST, kind: type) -> list:
    return [n for n in ast.walk(tree) if isinstance(n, kind)]


def _label(node: ast.AST) -> str:
    for attr in ("name", "attr", "arg", "value"):
        if hasattr(node, attr):
            return repr(getattr(node, attr))
    return ""


def test_write_class_takes_submission_times(tmp_path):
    root = course_root(tmp_path, ["rnn_basics"])
    late = datetime.datetime(2026, 11, 22, 9, 30, tzinfo=datetime.timezone(datetime.timedelta(hours=1)))
    classes = {"rnn_basics": roster(["rnn_basics"], 3)["rnn_basics"]}
    write_class(root, classes, timestamps={("rnn_basics", "student02"): late,
                                           ("rnn_basics", "student03"): datetime.datetime(2026, 11, 21, 8)})
    stamp = {s: (root / "submitted" / s / "rnn_basics" / "timestamp.txt").read_text() for s in
             ("student01", "student02", "student03")}
    assert stamp == {"student01": "2026-11-20T12:00:00+00:00", "student02": "2026-11-22T08:30:00+00:00",
                     "student03": "2026-11-21T08:00:00+00:00"}


def test_an_unknown_assignment_is_a_course_error(tmp_path):
    root = course_root(tmp_path, ["rnn_basics"])
    with pytest.raises(CourseError, match="unknown assignment 'nope'"):
        similarity.similarity_report(root, "nope")


def test_the_command_prints_the_pairs_and_the_report(tmp_path, capsys):
    root = course_root(tmp_path, ["lstm_gru"])
    independent_class(root, "lstm_gru")

    def command(sub, name, func, help_text, parent):
        p = sub.add_parser(name, help=help_text, parents=[parent])
        p.set_defaults(func=func)
        return p

    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--root", default=str(root))
    parser = argparse.ArgumentParser()
    similarity.add_similarity_command(parser.add_subparsers(dest="command", required=True), command, common)
    args = parser.parse_args(["similarity", "lstm_gru"])
    assert args.func(args) == 0
    out = capsys.readouterr().out
    assert "copier + source:" in out and "similarity-lstm_gru.html" in out and "no verdict" in out
    args = parser.parse_args(["similarity", "lstm_gru", "--threshold", "0.01"])
    args.func(args)
    assert capsys.readouterr().out.count(" + ") > 1
    with pytest.raises(CourseError):
        args = parser.parse_args(["similarity", "nope"])
        args.func(args)
