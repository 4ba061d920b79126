"""``python -m grading``: the instructor's command line (see ``grading.instructor.cli``)."""

import os
import sys

# nbgrader shells out to `alembic`, installed beside this interpreter.
os.environ["PATH"] = os.path.dirname(sys.executable) + os.pathsep + os.environ.get("PATH", "")

from grading.instructor.cli import exit_process, main

exit_process(main())
