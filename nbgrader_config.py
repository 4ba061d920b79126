"""nbgrader settings shared by instructors and the students' Validate button.

Course root = the directory nbgrader runs in (this file's directory for the instructor,
the student workspace for students). The gradebook is ``gradebook.db`` in that root, unless
``db_url`` below or the environment variable ``GRADING_DB_URL`` names another (PostgreSQL for
several graders: ``python -m grading db init``; its password goes in ``~/.pgpass`` or the
environment, never here: students' Validate reads this file).
Grading-only settings (sandbox, verifier, grader limits) are ``GradingSettings``
(``grading/instructor/settings.py``), set in ``grading_config.py`` at the course root or by
``GRADING_*`` environment variables: the Validate button never reads them.
"""

c = get_config()  # noqa: F821 - provided by nbgrader

c.CourseDirectory.course_id = "rnn-course"
# The gradebook defaults to sqlite:///<root>/gradebook.db; for PostgreSQL set GRADING_DB_URL (or, without a
# password, c.CourseDirectory.db_url = "postgresql+psycopg2://rnn_course@host/rnn_course").

# Our solved notebooks run in a few seconds; a training cell takes well under one.
c.Execute.timeout = 30
c.Execute.interrupt_on_timeout = True
c.Execute.extra_arguments = ["--HistoryManager.enabled=False"]

c.ClearSolutions.code_stub = {"python": "# YOUR CODE HERE\nraise NotImplementedError()"}
c.ClearSolutions.text_stub = "YOUR ANSWER HERE"

# Restore the release's cell layout (deleted, duplicated, split or edited locked cells)
# before nbgrader overwrites test cells: works around OverwriteCells.add_missing_cells,
# which raises KeyError next to read-only cells. Given as a string so that Validate,
# which never autogrades, does not import it.
c.Autograde.sanitize_preprocessors = [
    "nbgrader.preprocessors.ClearOutput",
    "grading.instructor.normalize.RestoreLayout",
    "nbgrader.preprocessors.DeduplicateIds",
    "nbgrader.preprocessors.OverwriteKernelspec",
    "nbgrader.preprocessors.OverwriteCells",
    "nbgrader.preprocessors.CheckCellMetadata",
]
