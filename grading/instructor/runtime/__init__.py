"""Code that runs inside the grading sandbox: the warm kernel server and the verifier's harness.

This package, ``grading.student`` and ``grading.instructor.exercises`` are the only parts of
the course package the sandbox can see (see ``grading.instructor.sandbox``).
"""
