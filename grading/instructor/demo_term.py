"""The sample class's term: ``course.yml`` with due dates, one extension and a late policy, and the
submission times that make one student late, one late but within an extension, and one past the cap.

Every other synthetic student submits on 2026-11-20 at 12:00 UTC, before every due date.
"""

from __future__ import annotations

import datetime
from pathlib import Path

from .term import TERM_FILE

DEMO_TERM = """\
# The demo term (README, "The term"): due dates, extensions and the late policy of the sample class.
assignments:
  rnn_basics:
    due: 2026-11-20T18:00:00+01:00
  hello_ohlol:
    due: 2026-11-20T18:00:00+01:00
  lstm_gru:
    due: 2026-11-20T18:00:00+01:00
  char_lm:
    due: 2026-11-20T18:00:00+01:00
extensions:
  student02:
    hello_ohlol:
      due: 2026-11-24T18:00:00+01:00
      reason: medical certificate
late_policy:
  per_day: 10
  max_days: 3
  applies_to: score
"""

#: (assignment, student) -> when they submitted, and what the term makes of it
LATE_SUBMISSIONS = {
    ("hello_ohlol", "student01"): ("2026-11-22T09:30:00+01:00", "2 started days late: 20% off"),
    ("hello_ohlol", "student02"): ("2026-11-23T10:00:00+01:00", "late, but within the extension: nothing off"),
    ("lstm_gru", "student03"): ("2026-11-25T20:00:00+01:00", "5 days late, past the 3-day cap: 0"),
}


def apply_demo_term(root: Path) -> None:
    """Write the demo's ``course.yml`` and the late students' submission times into ``submitted/``."""
    (root / TERM_FILE).write_text(DEMO_TERM, encoding="utf-8")
    for (assignment, student), (when, _) in LATE_SUBMISSIONS.items():
        folder = root / "submitted" / student / assignment
        if folder.is_dir():
            stamp = datetime.datetime.fromisoformat(when).astimezone(datetime.UTC)
            (folder / "timestamp.txt").write_text(stamp.strftime("%Y-%m-%d %H:%M:%S.%f UTC"), encoding="utf-8")
