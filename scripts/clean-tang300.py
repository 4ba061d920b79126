#!/usr/bin/env python3
"""Write source/char_lm/tang300.txt from Debian's fortunes-zh ``tang300`` file.

Usage: ``scripts/clean-tang300.py PATH/TO/tang300 source/char_lm/tang300.txt``

The fortune file holds each poem as a title line (ANSI green), an author line (ANSI yellow) and the
body lines, with ``%`` lines between poems. The copy keeps the bodies only: one poem per paragraph,
its lines as in the package, paragraphs separated by one empty line. Get the package with
``apt-get download fortunes-zh && dpkg-deb -x fortunes-zh_*_all.deb fz`` (the file is
``fz/usr/share/games/fortunes/tang300``).
"""

from __future__ import annotations

import re
import sys
from pathlib import Path

ANSI = re.compile(r"\x1b\[[0-9;]*m")


def poem_bodies(text: str) -> list[str]:
    """The fortune file's text -> one string per poem: its body lines joined by newlines."""
    poems = []
    for block in text.split("\n%\n"):
        lines = [line.strip() for line in block.strip("\n%").splitlines()]
        body = [line for line in lines if line and not ANSI.search(line) and line != "%"]
        if body:
            poems.append("\n".join(body))
    return poems


def main(source: str, target: str) -> None:
    poems = poem_bodies(Path(source).read_text(encoding="utf-8"))
    Path(target).write_text("\n\n".join(poems) + "\n", encoding="utf-8")
    print(f"{len(poems)} poems, {sum(map(len, poems))} characters -> {target}")


if __name__ == "__main__":
    main(*sys.argv[1:])
