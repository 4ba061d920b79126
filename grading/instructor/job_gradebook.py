"""The throwaway gradebook a job is graded against, and the rows that go back to the course's.

nbgrader's autograde needs a gradebook: ``OverwriteCells`` reads the release's cells from it and
``SaveAutoGrades`` writes the scores into it. A job gets its own sqlite file holding only its
assignment's notebooks and cells, as ``generate_assignment`` stored them (solution cells hold the
stub, test cells their hidden tests), plus the due date and this student's extension and manual
scores. It holds no solution and no other student.
"""

from __future__ import annotations

import datetime
import functools
import tempfile
from pathlib import Path

import nbgrader
from nbgrader.api import Base, Gradebook, MissingEntry

SOURCE_FIELDS = ("cell_type", "locked", "source", "checksum")


@functools.cache
def alembic_head() -> str:
    """nbgrader's current schema revision, read from its migration scripts in this process (nbgrader itself runs
    ``alembic heads`` in a new Python process, about a second, whenever it creates a gradebook)."""
    from alembic.config import Config
    from alembic.script import ScriptDirectory

    config = Config()
    config.set_main_option("script_location", str(Path(nbgrader.__file__).parent / "alembic"))
    return ScriptDirectory.from_config(config).get_current_head()


def new_sqlite_gradebook(path: Path) -> str:
    """Create an empty sqlite gradebook at ``path``, as nbgrader would (its tables and alembic revision); its URL."""
    from sqlalchemy import create_engine, text

    url = f"sqlite:///{path}"
    engine = create_engine(url, future=True)
    try:
        Base.metadata.create_all(bind=engine)
        with engine.begin() as db:
            db.execute(text("CREATE TABLE alembic_version (version_num VARCHAR(32) NOT NULL)"))
            db.execute(text("INSERT INTO alembic_version (version_num) VALUES (:v)"), {"v": alembic_head()})
    finally:
        engine.dispose()
    return url


def assignment_template(db_url: str, course_id: str, assignment: str) -> bytes:
    """A sqlite gradebook (as bytes) with ``assignment``'s notebooks and cells copied from the course's."""
    with tempfile.TemporaryDirectory(prefix="rnn-template-") as tmp:
        path = Path(tmp) / "gradebook.db"
        with Gradebook(db_url, course_id) as course, Gradebook(new_sqlite_gradebook(path), course_id) as job:
            source = course.find_assignment(assignment)
            job.update_or_create_assignment(assignment, duedate=source.duedate)
            for nb in source.notebooks:
                job.update_or_create_notebook(nb.name, assignment)
                for cell in nb.grade_cells:
                    job.update_or_create_grade_cell(cell.name, nb.name, assignment, max_score=cell.max_score,
                                                    cell_type=cell.cell_type)
                for cell in nb.solution_cells:
                    job.update_or_create_solution_cell(cell.name, nb.name, assignment)
                for cell in nb.task_cells:
                    job.update_or_create_task_cell(cell.name, nb.name, assignment, max_score=cell.max_score,
                                                   cell_type=cell.cell_type)
                for cell in nb.source_cells:
                    job.update_or_create_source_cell(cell.name, nb.name, assignment,
                                                     **{f: getattr(cell, f) for f in SOURCE_FIELDS})
        return path.read_bytes()


def student_rows(gb: Gradebook, assignment: str, student: str) -> list[dict]:
    """This student's extension and the graders' manual scores and comments on this assignment (for feedback)."""
    try:
        submission = gb.find_submission(assignment, student)
    except MissingEntry:
        return []
    rows: list[dict] = []
    if submission.extension is not None:
        rows.append({"kind": "extension", "seconds": submission.extension.total_seconds()})
    for nb in submission.notebooks:
        rows += [{"kind": "grade", "notebook": nb.name, "name": g.name, "manual": g.manual_score}
                 for g in nb.grades if g.manual_score is not None]
        rows += [{"kind": "comment", "notebook": nb.name, "name": c.name, "manual": c.manual_comment}
                 for c in nb.comments if c.manual_comment is not None]
    return rows


def put_student_rows(gb: Gradebook, assignment: str, student: str, rows: list[dict]) -> None:
    """Enter ``student_rows`` into a job's gradebook (after autograde has created the submission)."""
    submission = gb.update_or_create_submission(assignment, student)
    for row in rows:
        try:
            if row["kind"] == "extension":
                submission.extension = datetime.timedelta(seconds=row["seconds"])
            elif row["kind"] == "grade":
                gb.find_grade(row["name"], row["notebook"], assignment, student).manual_score = row["manual"]
            else:
                gb.find_comment(row["name"], row["notebook"], assignment, student).manual_comment = row["manual"]
        except MissingEntry:
            continue
    gb.db.commit()


def machine_rows(gb: Gradebook, assignment: str, student: str) -> tuple[str | None, list, list, dict]:
    """What the grader decided in a job's gradebook: the timestamp, every grade's ``auto_score`` and
    ``needs_manual_grade``, every comment's ``auto_comment`` and each notebook's late penalty."""
    submission = gb.find_submission(assignment, student)
    grades, comments, penalties = [], [], {}
    for nb in submission.notebooks:
        penalties[nb.name] = nb.late_submission_penalty
        grades += [{"notebook": nb.name, "name": g.name, "auto_score": g.auto_score,
                    "needs_manual": bool(g.needs_manual_grade)} for g in nb.grades]
        comments += [{"notebook": nb.name, "name": c.name, "auto_comment": c.auto_comment} for c in nb.comments]
    timestamp = submission.timestamp.isoformat() if submission.timestamp else None
    return timestamp, grades, comments, penalties


def write_machine_rows(gb: Gradebook, assignment: str, student: str, timestamp: str | None, grades: list,
                       comments: list, penalties: dict) -> None:
    """Enter a job's machine rows into the course's gradebook (never a grader's manual score or comment)."""
    gb.update_or_create_student(student)
    kwargs = {"timestamp": datetime.datetime.fromisoformat(timestamp)} if timestamp else {}
    submission = gb.update_or_create_submission(assignment, student, **kwargs)
    by_name = {nb.name: nb for nb in submission.notebooks}
    for row in grades:
        grade = gb.find_grade(row["name"], row["notebook"], assignment, student)
        grade.auto_score = row["auto_score"]
        grade.needs_manual_grade = row["needs_manual"] or grade.manual_score is not None
    for row in comments:
        gb.find_comment(row["name"], row["notebook"], assignment, student).auto_comment = row["auto_comment"]
    for name, penalty in penalties.items():
        if name in by_name:
            by_name[name].late_submission_penalty = penalty
