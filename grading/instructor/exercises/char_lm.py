"""Hidden checks of the ``char_lm`` assignment: the capstone.

``bptt.ipynb``: :mod:`.char_lm_bptt` (``rnn_bptt``, ``clip_grad_norm``). ``poems.ipynb``: :mod:`.char_lm_text`
(``build_vocab``, ``make_batches``, ``perplexity``, ``sample``) and :mod:`.char_lm_model` (``char_lm``,
``train_tbptt``).
"""

from __future__ import annotations

from .char_lm_bptt import EXERCISES as BPTT_EXERCISES
from .char_lm_model import EXERCISES as MODEL_EXERCISES
from .char_lm_text import EXERCISES as TEXT_EXERCISES

EXERCISES = [*BPTT_EXERCISES, *TEXT_EXERCISES, *MODEL_EXERCISES]
