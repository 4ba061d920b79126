"""The notebook the grader-integrity suites attack: rnn_basics/rnn_cell, two test cells of 2 points each.

Shared by the hostile, isolation and fail-closed suites: its reference answers, a wrong one, the
score tables they assert, and the one-line cheat that fools plain nbgrader.
"""

from conftest import solution_source, source_nb

A, NB = "rnn_basics", "rnn_cell"
REF = source_nb(A, NB)
STEP = solution_source(REF, "rnn_cell_step")
RUN = solution_source(REF, "run_cell")
WRONG_STEP = STEP.replace("+ bias_hh)", ")")
FULL = {"test_rnn_cell_step": 2.0, "test_run_cell": 2.0}
STEP_ZERO = {"test_rnn_cell_step": 0.0, "test_run_cell": 2.0}
RUN_ZERO = {"test_rnn_cell_step": 2.0, "test_run_cell": 0.0}
ALL_ZERO = {"test_rnn_cell_step": 0.0, "test_run_cell": 0.0}
# Rewrites every later cell, hidden tests included, into `pass`: full marks under plain nbgrader.
CHEAT = 'get_ipython().input_transformers_cleanup.append(lambda lines: ["pass\\n"])'

