"""Make text that came from a submission or the sandbox safe to store and show.

Anything a student's code printed, raised or named may be hostile: objects whose ``__str__``
raises, lone surrogates that no UTF-8 encoder or sqlite accepts, terminal escapes, bidi
overrides that reorder what the instructor reads, or a megabyte of text. ``clean_text``
turns any of it into a short plain string; ``exception_summary`` names an exception by its
type only.
"""

from __future__ import annotations

import re

MAX_LINES = 5
VERIFIER_COMMENT = "Checked outside the notebook: "  # how the verifier's comment on a solution cell starts
ELLIPSIS = "…"

_SURROGATES = re.compile("[\ud800-\udfff]")
_CONTROLS = re.compile("[\x00-\x09\x0b-\x1f\x7f-\x9f\u061c\u200e\u200f\u2028\u2029\u202a-\u202e\u2066-\u2069]")
_TYPE_NAME = re.compile(r"[A-Za-z_][A-Za-z0-9_.]{0,80}")


def _as_str(value: object) -> str:
    """``str(value)`` as an exact ``str``, or a placeholder when the object will not say."""
    try:
        if isinstance(value, (bytes, bytearray, memoryview)):
            return bytes(value).decode("utf-8", "replace")
        text = str(value)
        return str.__str__(text) if isinstance(text, str) else _unprintable(value)
    except Exception:  # noqa: BLE001 - a hostile __str__ may raise anything
        return _unprintable(value)


def _unprintable(value: object) -> str:
    try:
        name = type(value).__name__
    except Exception:  # noqa: BLE001 - a hostile metaclass may raise anything
        name = ""
    if not isinstance(name, str) or not _TYPE_NAME.fullmatch(name):
        return "<unprintable object>"
    return f"<unprintable {name}>"


def clean_text(value: object, limit: int = 300, lines: int = MAX_LINES) -> str:
    """``value`` as storable plain text: valid UTF-8, no control characters but newlines,
    at most ``lines`` lines and ``limit`` characters (ending with "…" when cut). Never raises."""
    try:
        limit, most = max(1, int(limit)), max(1, int(lines))
        text = _as_str(value)
        cut = len(text) > limit
        text = _CONTROLS.sub(" ", _SURROGATES.sub("\ufffd", text[:limit]))
        kept = text.split("\n", most)
        if len(kept) > most:
            text, cut = "\n".join(kept[:most]), True
        if cut:
            text = text[:limit - 1].rstrip() + ELLIPSIS
        return text
    except Exception:  # noqa: BLE001 - e.g. MemoryError on a gigantic value
        return "<unprintable object>"


def exception_summary(exc_type_name: str, where: str = "") -> str:
    """Say that code raised an exception, naming only its type: "raised ValueError", or
    "rnn_cell_step raised ValueError" with ``where``. A name that does not look like a Python
    type name is not repeated ("raised an exception"). Never raises."""
    valid = isinstance(exc_type_name, str) and _TYPE_NAME.fullmatch(exc_type_name)
    summary = f"raised {str.__str__(exc_type_name)}" if valid else "raised an exception"
    place = "" if where is None else " ".join(clean_text(where, 80).split())
    return f"{place} {summary}" if place else summary


def cut_at_sentence(text: str, limit: int = 400) -> str:
    """``text`` whole when it fits in ``limit`` characters, otherwise its leading sentences that fit
    (ending with "…"), or its leading words when even the first sentence is too long. Never cuts mid-word."""
    text = " ".join(text.split())
    if len(text) <= limit:
        return text
    head = text[:limit]
    sentence_end = head.rfind(". ")
    if sentence_end >= limit // 3:
        return head[:sentence_end + 1] + " " + ELLIPSIS
    word_end = head.rfind(" ")
    return (head[:word_end] if word_end > 0 else head[:limit - 1]).rstrip(",;: ") + " " + ELLIPSIS
