"""Memory and process-count limits that hold for everything a group of processes does.

``RLIMIT_AS`` counts address space only: pages written into ``memfd_create`` files, tmpfs or
``/dev/shm`` escape it. A memory cgroup charges those pages to the group of the process that
wrote them, and a pids cgroup bounds forks across uids. Cgroup v1 (``memory`` and ``pids``
hierarchies under /sys/fs/cgroup) and cgroup v2 (one unified hierarchy with those
controllers enabled) are both handled; where neither is writable, ``Cgroup.create`` returns
None and the caller falls back to rlimits, saying so.
"""

from __future__ import annotations

import os
import signal
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path("/sys/fs/cgroup")
PARENT = "rnn-grading"


@dataclass
class Cgroup:
    """One group, as directories in the memory and pids hierarchies (the same directory on v2)."""

    memory: Path
    pids: Path
    v2: bool

    @classmethod
    def create(cls, name: str, root: Path = ROOT) -> Cgroup | None:
        """A fresh group ``rnn-grading/<name>``, or None when this machine gives us no writable cgroups."""
        if (root / "memory" / "memory.limit_in_bytes").exists() and (root / "pids").is_dir():
            group = cls(root / "memory" / PARENT / name, root / "pids" / PARENT / name, v2=False)
        elif "memory" in _read(root / "cgroup.subtree_control") and "pids" in _read(root / "cgroup.subtree_control"):
            path = root / PARENT / name
            group = cls(path, path, v2=True)
        else:
            return None
        try:
            for path in {group.memory, group.pids}:
                if path.exists():
                    group._empty(path)
                    path.rmdir()
                path.mkdir(parents=True)
            if group.v2:
                (group.memory.parent / "cgroup.subtree_control").write_text("+memory +pids")
        except OSError:
            return None
        return group

    def join(self, pid: int = 0) -> None:
        """Move ``pid`` (0: the calling process) into the group; children it forks stay in it."""
        pid = pid or os.getpid()
        for path in {self.memory, self.pids}:
            (path / "cgroup.procs").write_text(str(pid))

    def usage_bytes(self) -> int:
        name = "memory.current" if self.v2 else "memory.usage_in_bytes"
        return int(_read(self.memory / name) or 0)

    def limit(self, memory_bytes: int | None = None, pids: int | None = None) -> None:
        if memory_bytes is not None:
            (self.memory / ("memory.max" if self.v2 else "memory.limit_in_bytes")).write_text(str(memory_bytes))
            if self.v2 and (self.memory / "memory.swap.max").exists():
                (self.memory / "memory.swap.max").write_text("0")
        if pids is not None:
            (self.pids / "pids.max").write_text(str(pids))

    def remove(self) -> None:
        """Kill whatever is still in the group, then delete it."""
        for path in {self.memory, self.pids}:
            try:
                self._empty(path)
                path.rmdir()
            except OSError:
                pass

    @staticmethod
    def _empty(path: Path, timeout: float = 5) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            pids = [int(p) for p in _read(path / "cgroup.procs").split()]
            if not pids:
                return
            for pid in pids:
                try:
                    os.kill(pid, signal.SIGKILL)
                except ProcessLookupError:
                    pass
            time.sleep(0.02)


def _read(path: Path) -> str:
    try:
        return path.read_text()
    except OSError:
        return ""
