"""Catalogue of the ``char_lm`` assignment, one module per part (see :mod:`grading.instructor.exercises.char_lm`)."""

from .char_lm_bptt import ANSWERS as BPTT_ANSWERS
from .char_lm_model import ANSWERS as MODEL_ANSWERS
from .char_lm_text import ANSWERS as TEXT_ANSWERS

ANSWERS = [*BPTT_ANSWERS, *TEXT_ANSWERS, *MODEL_ANSWERS]
