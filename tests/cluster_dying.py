"""A Dask preload for the cluster tests: this worker process dies whenever it is given student ``di``'s job.

Models a submission that brings down every machine that grades it (in the field: a kernel bug, a
machine that runs out of memory). Loaded after ``grading.instructor.worker`` with ``--preload``.
"""

import os

from grading.instructor import worker

_real = worker.run_job


def _dying(job):
    if job.student == "di":
        os._exit(9)
    return _real(job)


def dask_setup(dask_worker):
    worker.run_job = _dying
