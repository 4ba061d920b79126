"""The RNN course's Python package.

Two halves:

* ``grading.student``: checks that visible tests call, and lecture widgets. Shipped to
  students; holds no answer to any exercise.
* ``grading.instructor``: hidden checks, the answer catalogue, the grading pipeline.
  Never shipped.
"""

__version__ = "0.1.0"
