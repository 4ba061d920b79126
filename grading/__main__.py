"""``python -m grading``: the instructor's command line (see ``grading.instructor.cli``)."""

import sys

from grading.instructor.cli import main

sys.exit(main())
