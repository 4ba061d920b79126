"""An assignment's data files (the poems of ``char_lm``): which they are, and where a check finds them.

The data files of an assignment are the files of ``release/<assignment>/`` with a suffix in :data:`DATA_SUFFIXES`
(not its notebooks or figures). The grader sends the course's own copies with every job (never the student's: a
submitted file is ignored) and puts them beside every notebook its kernels run and in a folder the verifier's checks
search first (:func:`data_folder`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from pathlib import Path

DATA_SUFFIXES = (".txt", ".csv", ".json")
_REPO = Path(__file__).resolve().parents[3]
_FOLDERS: list[Path] = []


def data_files(release_dir: Path) -> dict[str, bytes]:
    """name -> bytes of the data files in one assignment's release folder (top level only)."""
    if not release_dir.is_dir():
        return {}
    return {p.name: p.read_bytes() for p in sorted(release_dir.iterdir())
            if p.is_file() and not p.is_symlink() and p.suffix in DATA_SUFFIXES}


def write_data(files: dict[str, bytes], folder: Path) -> None:
    """Write ``files`` into ``folder``, read-only, refusing any name that is not a plain file name."""
    folder.mkdir(parents=True, exist_ok=True)
    for name, data in files.items():
        if Path(name).name != name or name.startswith("."):
            raise ValueError(f"not a data file name: {name!r}")
        path = folder / name
        path.write_bytes(data)
        path.chmod(0o444)


@contextlib.contextmanager
def data_folder(folder: Path) -> Iterator[None]:
    """While active, :func:`find` looks in ``folder`` first (the grader's copy of this job's data)."""
    _FOLDERS.insert(0, folder)
    try:
        yield
    finally:
        _FOLDERS.remove(folder)


def find(assignment: str, name: str) -> Path:
    """The data file ``name`` of ``assignment``: the grader's folder, the working directory (a notebook's kernel),
    then this repository's release/ and source/ copies."""
    candidates = [*(f / name for f in _FOLDERS), Path(name),
                  _REPO / "release" / assignment / name, _REPO / "source" / assignment / name]
    for path in candidates:
        if path.is_file():
            return path
    raise FileNotFoundError(f"the data file {name} of {assignment} is in none of: "
                            + ", ".join(str(p.parent) for p in candidates))
