"""A private PostgreSQL server for tests that stop the database: ``initdb``, a free port, a PID.

The shared server is never touched: the cluster lives in a temporary directory, listens on
127.0.0.1 only, and is stopped by the PID of its postmaster. Under root the server runs as the
``postgres`` user (PostgreSQL refuses to run as root).
"""

from __future__ import annotations

import contextlib
import glob
import os
import pwd
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Iterator

import pytest


def _binary(name: str) -> str | None:
    found = shutil.which(name)
    if found:
        return found
    candidates = sorted(glob.glob(f"/usr/lib/postgresql/*/bin/{name}"))
    return candidates[-1] if candidates else None


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port: int = probe.getsockname()[1]
        return port


class PrivateServer:
    """A PostgreSQL cluster of the test's own, started and stopped by PID."""

    def __init__(self, folder: str, port: int, user: str | None) -> None:
        self.folder = folder
        self.data = os.path.join(folder, "data")
        self.port = port
        self.user = user
        self.process: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        """The SQLAlchemy URL of its ``postgres`` database (psycopg driver)."""
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/postgres"

    def _command(self, *args: str) -> list[str]:
        return ["runuser", "-u", self.user, "--", *args] if self.user else list(args)

    def start(self, timeout: float = 30) -> None:
        """Start the postmaster and wait until it accepts connections."""
        postgres = _binary("postgres")
        assert postgres is not None
        self.process = subprocess.Popen(
            self._command(
                postgres,
                "-D",
                self.data,
                "-p",
                str(self.port),
                "-c",
                "listen_addresses=127.0.0.1",
                "-c",
                f"unix_socket_directories={self.folder}",
                "-c",
                "fsync=off",
                "-c",
                "synchronous_commit=off",
                "-c",
                "full_page_writes=off",
            ),
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
        )
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise RuntimeError(f"the private PostgreSQL exited with {self.process.returncode}")
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=0.5):
                    pass
                import psycopg

                psycopg.connect(
                    f"postgresql://postgres@127.0.0.1:{self.port}/postgres", connect_timeout=2
                ).close()
                return
            except OSError:
                time.sleep(0.1)
            except Exception:
                time.sleep(0.1)
        raise RuntimeError("the private PostgreSQL did not start in time")

    def stop(self) -> None:
        """Stop the postmaster (fast shutdown: clients are disconnected) and wait for it."""
        if self.process is None:
            return
        # runuser forwards the signal to the postmaster it runs.
        with contextlib.suppress(ProcessLookupError):
            os.kill(self._postmaster_pid(), signal.SIGINT)
        try:
            self.process.wait(30)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(self._postmaster_pid(), signal.SIGKILL)
            self.process.wait(30)
        self.process = None

    def _postmaster_pid(self) -> int:
        assert self.process is not None
        try:
            with open(os.path.join(self.data, "postmaster.pid")) as pid_file:
                return int(pid_file.readline())
        except (OSError, ValueError):
            return self.process.pid


@contextlib.contextmanager
def private_postgres() -> Iterator[PrivateServer]:
    """Yield a running private PostgreSQL cluster; stop it and delete it afterwards.

    Skips the test when ``initdb``/``postgres`` are not installed (or under ``CI=true`` fails).
    """
    initdb = _binary("initdb")
    if initdb is None or _binary("postgres") is None:
        message = "initdb/postgres are not installed; install the postgresql server package"
        if os.environ.get("CI") == "true":
            pytest.fail(message, pytrace=False)
        pytest.skip(message)
    user = "postgres" if os.geteuid() == 0 else None
    folder = tempfile.mkdtemp(prefix="tidings-pg-")
    try:
        if user is not None:
            entry = pwd.getpwnam(user)
            os.chown(folder, entry.pw_uid, entry.pw_gid)
        server = PrivateServer(folder, free_port(), user)
        subprocess.run(
            server._command(
                initdb, "-D", server.data, "-U", "postgres", "--auth=trust", "-E", "UTF8", "-N"
            ),
            check=True,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.PIPE,
        )
        server.start()
        try:
            yield server
        finally:
            server.stop()
    finally:
        shutil.rmtree(folder, ignore_errors=True)
