"""A private redis-server for the tests that kill one: started on a free port, stopped by PID.

The shared Redis is never stopped; these servers live in a temporary directory (their AOF and
RDB files too) and are killed with SIGKILL by the test or, at the latest, by the fixture.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

from tests.conftest import _server_missing


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


class RedisServer:
    """One redis-server process of the test's own.

    Args:
        directory: Where it keeps its files (AOF, RDB); the same on every restart.
        aof: Append-only file on, with ``appendfsync always`` (every write on disk before the
            reply); off means no persistence at all (no RDB snapshots either).
        password: ``requirepass``, when the test needs authentication.
        tls: Also listen with TLS on ``tls_port``, with a certificate for 127.0.0.1 signed by
            a CA made for the test (``ca_file``); the plain port stays for the start check.
    """

    def __init__(
        self,
        directory: Path,
        *,
        aof: bool = False,
        password: str | None = None,
        tls: bool = False,
    ) -> None:
        binary = shutil.which("redis-server")
        if binary is None:
            _server_missing("redis-server", "install it (apt-get install redis-server)")
        self.binary = binary or "redis-server"
        self.directory = directory
        self.aof = aof
        self.password = password
        self.port = free_port()
        self.process: subprocess.Popen[bytes] | None = None
        self.starts = 0
        self.tls_port = free_port() if tls else None
        self.ca_file = directory / "ca.pem"
        if tls:
            make_certificates(directory)

    @property
    def url(self) -> str:
        """The URL to reach it (with the password, if any)."""
        auth = f":{self.password}@" if self.password else ""
        return f"redis://{auth}127.0.0.1:{self.port}/0"

    def start(self, timeout: float = 15.0) -> None:
        """Start it (again, on the same port and files) and wait until it answers PING."""
        args = [
            self.binary,
            "--port",
            str(self.port),
            "--bind",
            "127.0.0.1",
            "--dir",
            str(self.directory),
            "--save",
            "",
            "--appendonly",
            "yes" if self.aof else "no",
            "--appendfsync",
            "always",
            "--daemonize",
            "no",
            "--logfile",
            str(self.directory / "redis.log"),
        ]
        if self.password:
            args += ["--requirepass", self.password]
        if self.tls_port is not None:
            args += [
                "--tls-port",
                str(self.tls_port),
                "--tls-cert-file",
                str(self.directory / "server.pem"),
                "--tls-key-file",
                str(self.directory / "server.key"),
                "--tls-ca-cert-file",
                str(self.ca_file),
                "--tls-auth-clients",
                "no",
            ]
        self.process = subprocess.Popen(args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.starts += 1
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                log = (self.directory / "redis.log").read_text(errors="replace")[-2000:]
                raise RuntimeError(f"redis-server exited at start: {log}")
            if self._answers():
                return
            time.sleep(0.05)
        raise RuntimeError(f"redis-server on port {self.port} did not answer in {timeout} s")

    def _answers(self) -> bool:
        try:
            with socket.create_connection(("127.0.0.1", self.port), timeout=1) as sock:
                sock.sendall(b"PING\r\n")
                reply = sock.recv(64)
        except OSError:
            return False
        # A server still loading its AOF answers -LOADING; with a password, -NOAUTH.
        return reply.startswith((b"+PONG", b"-NOAUTH"))

    def kill(self) -> None:
        """SIGKILL it by PID and wait until it is gone."""
        if self.process is not None and self.process.poll() is None:
            os.kill(self.process.pid, signal.SIGKILL)
            self.process.wait(10)
        self.process = None

    def stop(self) -> None:
        """Kill it if it runs (the fixture's teardown)."""
        self.kill()


def make_certificates(directory: Path) -> None:
    """A CA (ca.pem) and a server certificate for 127.0.0.1 it signed (server.pem/.key)."""
    openssl = shutil.which("openssl")
    if openssl is None:
        _server_missing("openssl", "install it (apt-get install openssl)")
    d = str(directory)

    def run(*args: str) -> None:
        subprocess.run([openssl or "openssl", *args], check=True, capture_output=True, cwd=d)

    # Python 3.13 verifies strictly (VERIFY_X509_STRICT): the CA needs its key usage, the
    # server certificate its key identifiers.
    run("req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=test-ca",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        "-keyout", "ca.key", "-out", "ca.pem")  # fmt: skip
    run("req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1",
        "-keyout", "server.key", "-out", "server.csr")  # fmt: skip
    (directory / "san.ext").write_text(
        "subjectAltName=IP:127.0.0.1\n"
        "basicConstraints=CA:FALSE\n"
        "keyUsage=critical,digitalSignature,keyEncipherment\n"
        "extendedKeyUsage=serverAuth\n"
        "subjectKeyIdentifier=hash\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    run("x509", "-req", "-in", "server.csr", "-CA", "ca.pem", "-CAkey", "ca.key",
        "-CAcreateserial", "-days", "1", "-extfile", "san.ext", "-out", "server.pem")  # fmt: skip
