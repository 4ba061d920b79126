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


# Grade changes made in formgrader name their grader in the gradebook's audit trail (python -m grading audit;
# grading/instructor/audit.py). Self-contained: formgrader's environment has no grading package. It acts only in
# a running Jupyter server and on a gradebook that has the audit tables: students' Validate, which may read this
# file, and the grader's own processes are left alone.
def _grading_audit_hook():
    import os
    import sys

    try:
        from sqlalchemy import event, text
        from sqlalchemy.orm import Session
    except ImportError:
        return
    if getattr(Session, "_grading_audit_hook", False):
        return
    keys = dict(sqlite=("0", "0"), postgresql=("pg_backend_pid()", "txid_current()"))
    probe = dict(sqlite="SELECT 1 FROM sqlite_master WHERE name = 'grading_audit_context'",
                 postgresql="SELECT to_regclass('grading_audit_context')")

    def user():
        import pwd

        try:
            return os.environ.get("JUPYTERHUB_USER") or pwd.getpwuid(os.geteuid()).pw_name
        except KeyError:
            return "uid " + str(os.geteuid())

    def before_flush(session, flush_context, instances):
        server = sys.modules.get("jupyter_server.serverapp")
        if server is None or not server.ServerApp.initialized() or session.info.get("grading_audit_context"):
            return  # not formgrader's process, or a session whose context the grader sets (audit.set_context)
        if not any(getattr(o, "__tablename__", "") in ("grade", "submitted_notebook")
                   for o in list(session.new) + list(session.dirty)):
            return
        connection = session.connection()
        dialect = connection.dialect.name
        if dialect not in keys or connection.execute(text(probe[dialect])).scalar() is None:
            return
        key, xact = keys[dialect]
        connection.execute(text("INSERT INTO grading_audit_context (key, xact, who, why) VALUES (" + key + ", "
                                + xact + ", :who, 'manual grade (formgrader)') ON CONFLICT (key) DO UPDATE SET "
                                "xact = excluded.xact, who = excluded.who, why = excluded.why"), dict(who=user()))
        session.info["grading_audit_key"] = key

    def after_flush(session, flush_context):
        key = session.info.pop("grading_audit_key", None)
        if key is not None:
            session.connection().execute(text("DELETE FROM grading_audit_context WHERE key = " + key))

    event.listen(Session, "before_flush", before_flush)
    event.listen(Session, "after_flush", after_flush)
    Session._grading_audit_hook = True


_grading_audit_hook()
