"""A real PostgreSQL server for the tests: ``initdb`` and ``pg_ctl`` from ``pg_config --bindir`` in a temporary
directory, run as a non-root account, listening on 127.0.0.1 at a free port and on a socket directory of its own.

As root, the server runs as the ``postgres`` system account (Debian's package creates it), or else as a throwaway
``rnntpg…`` account created here and removed at the end. Every wait has a deadline; ``stop`` ends the server by its
PID (fast shutdown, then immediate, then SIGKILL), removes the directory and the throwaway account, and is safe to
call after a failed start.
"""

from __future__ import annotations

import os
import pwd
import secrets
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

START_TIMEOUT = 60
STOP_TIMEOUT = 30
SUPERUSER = "postgres"
FAST_SETTINGS = """
listen_addresses = '127.0.0.1'
port = {port}
unix_socket_directories = '{sockets}'
fsync = off
synchronous_commit = off
full_page_writes = off
shared_buffers = 32MB
max_connections = 60
log_min_messages = warning
"""


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def bindir() -> Path | None:
    """PostgreSQL's binaries (``pg_config --bindir``), or None when PostgreSQL is not installed."""
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, timeout=30)
    except (FileNotFoundError, subprocess.TimeoutExpired):
        return None
    path = Path(out.stdout.strip())
    return path if out.returncode == 0 and (path / "initdb").is_file() and (path / "pg_ctl").is_file() else None


class PostgresServer:
    """One throwaway server. ``admin_url``: the superuser over TCP (password); ``socket_env``: PGHOST/PGPORT for
    the local socket, where the ``postgres`` account logs in by peer authentication."""

    def __init__(self) -> None:
        self.bin = bindir()
        self.base: Path | None = None
        self.pid: int | None = None
        self.account = ""
        self.created_account = False
        self.port = 0
        self.password = secrets.token_urlsafe(18)
        self.version = ""

    # ------------------------------------------------------------ start

    def start(self) -> PostgresServer:
        if self.bin is None:
            pytest.skip("PostgreSQL is not installed (no pg_config --bindir with initdb and pg_ctl)")
        self.version = self._run([str(self.bin / "postgres"), "--version"], as_account=False).stdout.strip()
        try:
            self._account()
            self.base = Path(tempfile.mkdtemp(prefix="rnn-pg-", dir="/tmp"))
            self.sockets.mkdir()
            pwfile = self.base / "superuser-password"
            pwfile.write_text(self.password + "\n")
            self._give(self.base, self.sockets, pwfile)
            local_auth = "peer" if self.account == SUPERUSER else "scram-sha-256"
            self._run([str(self.bin / "initdb"), "-D", str(self.data), "-U", SUPERUSER, f"--pwfile={pwfile}",
                       f"--auth-local={local_auth}", "--auth-host=scram-sha-256", "-E", "UTF8", "--no-locale",
                       "--no-sync"], timeout=120)
            pwfile.unlink()
            for attempt in range(3):
                self.port = free_port()
                with open(self.data / "postgresql.conf", "a") as f:
                    f.write(FAST_SETTINGS.format(port=self.port, sockets=self.sockets))
                out = self._run([str(self.bin / "pg_ctl"), "-D", str(self.data), "-l", str(self.base / "server.log"),
                                 "-w", "-t", str(START_TIMEOUT), "start"], timeout=START_TIMEOUT + 30, check=False)
                if out.returncode == 0:
                    break
                if attempt == 2:
                    raise RuntimeError(f"pg_ctl start failed:\n{out.stdout}{out.stderr}\n{self.log()[-3000:]}")
            self.pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            self._wait_ready()
        except BaseException:
            self.stop()
            raise
        return self

    def _account(self) -> None:
        if os.geteuid() != 0:
            self.account = pwd.getpwuid(os.geteuid()).pw_name
            return
        try:
            pwd.getpwnam(SUPERUSER)
            self.account = SUPERUSER
        except KeyError:
            self.account = "rnntpg" + secrets.token_hex(3)
            subprocess.run(["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", self.account],
                           check=True, capture_output=True, timeout=60)
            self.created_account = True

    def _give(self, *paths: Path) -> None:
        if os.geteuid() != 0:
            return
        entry = pwd.getpwnam(self.account)
        for path in paths:
            os.chown(path, entry.pw_uid, entry.pw_gid)
            os.chmod(path, 0o700 if path.is_dir() else 0o600)

    def _run(self, cmd: list[str], timeout: float = 60, check: bool = True,
             as_account: bool = True) -> subprocess.CompletedProcess:
        if as_account and os.geteuid() == 0:
            cmd = ["runuser", "-u", self.account, "--", *cmd]
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, cwd="/")
        if check and out.returncode != 0:
            raise RuntimeError(f"{' '.join(cmd)} exited {out.returncode}:\n{out.stdout}{out.stderr}")
        return out

    def _wait_ready(self) -> None:
        import psycopg2

        deadline = time.monotonic() + START_TIMEOUT
        while True:
            try:
                psycopg2.connect(self.dsn(), connect_timeout=5).close()
                return
            except psycopg2.OperationalError:
                if time.monotonic() > deadline:
                    raise RuntimeError(f"the server did not accept connections in {START_TIMEOUT} s:\n"
                                       f"{self.log()[-3000:]}") from None
                time.sleep(0.2)

    # ------------------------------------------------------------ use

    @property
    def data(self) -> Path:
        assert self.base is not None
        return self.base / "data"

    @property
    def sockets(self) -> Path:
        assert self.base is not None
        return self.base / "sockets"

    def admin_url(self, database: str = "postgres") -> str:
        return f"postgresql://{SUPERUSER}:{self.password}@127.0.0.1:{self.port}/{database}"

    def dsn(self, database: str = "postgres") -> str:
        return f"host=127.0.0.1 port={self.port} user={SUPERUSER} password={self.password} dbname={database}"

    def socket_env(self) -> dict[str, str]:
        return {"PGHOST": str(self.sockets), "PGPORT": str(self.port)}

    def sql(self, statement: str, database: str = "postgres", params: tuple = ()) -> list[tuple]:
        """Run one statement as the superuser (autocommit); its rows, if any."""
        import psycopg2

        conn = psycopg2.connect(self.dsn(database), connect_timeout=10)
        try:
            conn.autocommit = True
            with conn.cursor() as cur:
                cur.execute(statement, params or None)
                return cur.fetchall() if cur.description else []
        finally:
            conn.close()

    def log(self) -> str:
        try:
            return (self.base / "server.log").read_text(errors="replace") if self.base else ""
        except OSError:
            return ""

    # ------------------------------------------------------------ stop

    def _is_ours(self, pid: int) -> bool:
        """Whether ``pid`` is still this server's postmaster (not a reused PID)."""
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().split(b"\0")
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except (OSError, IndexError):
            return False
        return state != "Z" and str(self.data).encode() in cmdline

    def _signal_and_wait(self, sig: signal.Signals, seconds: float) -> bool:
        assert self.pid is not None
        if not self._is_ours(self.pid):
            return True
        try:
            os.kill(self.pid, sig)
        except ProcessLookupError:
            return True
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            if not self._is_ours(self.pid):
                return True
            time.sleep(0.1)
        return False

    def stop(self) -> None:
        if self.pid is None and self.base is not None and (self.data / "postmaster.pid").is_file():
            try:
                self.pid = int((self.data / "postmaster.pid").read_text().splitlines()[0])
            except (OSError, ValueError, IndexError):
                self.pid = None
        if self.pid is not None:
            for sig, seconds in ((signal.SIGINT, STOP_TIMEOUT), (signal.SIGQUIT, 10), (signal.SIGKILL, 10)):
                if self._signal_and_wait(sig, seconds):
                    break
            self.pid = None
        if self.base is not None:
            shutil.rmtree(self.base, ignore_errors=True)
            self.base = None
        if self.created_account:
            subprocess.run(["userdel", self.account], capture_output=True, timeout=60)
            self.created_account = False


def running_server():
    """A started PostgresServer for a fixture to yield, stopped afterwards (``yield from running_server()``)."""
    server = PostgresServer()
    try:
        yield server.start()
    finally:
        server.stop()
