"""A Dask preload for the cluster tests: this worker's kernel server cannot start.

The sandbox command is replaced by one that prints a reason and exits, as a machine without a
working bubblewrap would. Loaded after ``grading.instructor.worker`` with ``--preload``.
"""

from grading.instructor import sandbox

FAULT = "bubblewrap-is-broken-on-this-worker"


def _broken(*args, **kwargs):
    return ["sh", "-c", f"echo {FAULT} >&2; exit 1"]


def dask_setup(worker):
    sandbox.bwrap_command = _broken
