"""Read a notebook's prose, so that a test can tie a number quoted in it to the number the code computes.

A quoted-number test reads ``assert_quoted(path, f"floor {floor:.2f}")``: it fails when the prose
no longer says what the code computes, and when the code no longer computes what the prose says.
"""

from __future__ import annotations

import re
from pathlib import Path

import nbformat

REPO = Path(__file__).resolve().parents[1]


def prose(path: Path | str) -> str:
    """All markdown cells of the notebook at ``path`` (relative to the repository), joined, whitespace collapsed."""
    nb = nbformat.read(REPO / path, as_version=4)
    text = "\n\n".join(cell.source for cell in nb.cells if cell.cell_type == "markdown")
    return re.sub(r"\s+", " ", text)


def assert_quoted(path: Path | str, *phrases: str) -> None:
    """Every phrase (whitespace collapsed) occurs in the notebook's markdown."""
    text = prose(path)
    for phrase in phrases:
        phrase = re.sub(r"\s+", " ", phrase)
        assert phrase in text, f"{path}: the prose no longer says {phrase!r} (what the code computes)"


def code_outputs(path: Path | str) -> str:
    """The committed text outputs (stream and text/plain) of every code cell, joined."""
    nb = nbformat.read(REPO / path, as_version=4)
    parts = []
    for cell in nb.cells:
        for output in cell.get("outputs", []):
            if output.get("output_type") == "stream":
                parts.append(output.get("text", ""))
            elif "data" in output:
                parts.append(output["data"].get("text/plain", ""))
    return "\n".join(parts)
