"""Calibration of the training thresholds: ``python -m grading calibrate``.

Each assignment module exposes ``calibrate(num_seeds) -> rows``, ``problems(rows)`` and
``format_table(rows)``; a row says how often one variant (reference or known-bad) passed.
"""


def verdict_problems(rows: list[dict]) -> list[str]:
    """Rows whose pass rate is not the expected one: 100% for references, 0% for known-bad variants."""
    bad = []
    for r in rows:
        want = 1.0 if r["expected"] == "pass" else 0.0
        if r["pass_rate"] != want:
            bad.append(f"{r['exercise']}/{r['variant']} ({r['target']}): "
                       f"pass rate {r['pass_rate']:.3f}, expected {want:.0f}")
    return bad
