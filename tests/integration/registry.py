"""A private registry for the tests: Debian's ``docker-registry``
(distribution 2.8) with TLS and htpasswd authentication, on a free port of a
loopback address (or of another address of this machine, for an Engine in
another network namespace), as a subprocess of the test run.

The Engine is told to trust the registry's CA the way a user tells it:
``/etc/docker/certs.d/HOST:PORT/ca.crt``, read at each pull. Everything made
is removed when the registry stops: the process, its storage, the CA file.
"""

from __future__ import annotations

import base64
import contextlib
import json
import shutil
import socket
import ssl
import subprocess
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Final

USER: Final[str] = "wool"
"""The registry's one user."""

PASSWORD: Final[str] = "wool-docker-test-secret"
"""Its password."""

CERTS_D: Final[Path] = Path("/etc/docker/certs.d")
"""Where the Engine looks for a registry's CA."""

READY_TIMEOUT: Final[float] = 60.0
"""Seconds the registry may take to answer."""


@dataclass(frozen=True)
class Registry:
    """A running registry: its address, its access log, and config writers."""

    host: str
    """``ADDRESS:PORT``."""
    log: Path
    """The registry's output, its access log included."""
    root: Path
    """A directory of the registry's own files."""

    def reference(self, repository: str, tag: str) -> str:
        """An image reference in this registry."""
        return f"{self.host}/{repository}:{tag}"

    def docker_config(self, name: str, password: str = PASSWORD) -> Path:
        """A ``DOCKER_CONFIG`` directory whose ``config.json`` logs in to
        this registry as `USER` with ``password``, as ``docker login`` writes
        it (``auths``, base64 ``user:password``)."""
        directory = self.root / name
        directory.mkdir(exist_ok=True)
        auth = base64.b64encode(f"{USER}:{password}".encode()).decode()
        (directory / "config.json").write_text(
            json.dumps({"auths": {self.host: {"auth": auth}}})
        )
        return directory

    def requests(self, path: str) -> int:
        """How many requests the registry has logged whose path contains
        ``path``."""
        return sum(
            1
            for line in self.log.read_text(errors="replace").splitlines()
            # Access log lines only: `... "GET /v2/... HTTP/1.1" 200 ...`.
            if not line.startswith("time=") and " HTTP/" in line and path in line
        )


def free_port(address: str = "127.0.0.1") -> int:
    """A port of ``address`` nothing listens on now."""
    with socket.socket() as s:
        s.bind((address, 0))
        return s.getsockname()[1]


def _run(*args: str, cwd: Path) -> None:
    result = subprocess.run(args, cwd=cwd, capture_output=True, text=True)
    if result.returncode != 0:
        raise RuntimeError(f"{' '.join(args)}: {result.stderr.strip()}")


def _certificates(root: Path, address: str) -> None:
    """A CA, and a server certificate for ``address`` and localhost it signs."""
    ec = ("-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes")
    _run(
        "openssl", "req", "-x509", *ec, "-keyout", "ca-key.pem", "-out", "ca.pem",
        "-days", "1", "-subj", "/CN=wool-docker test registry CA",
        "-addext", "basicConstraints=critical,CA:TRUE",
        "-addext", "keyUsage=critical,keyCertSign,cRLSign",
        cwd=root,
    )  # fmt: skip
    _run(
        "openssl", "req", *ec, "-keyout", "key.pem", "-out", "server.csr",
        "-subj", f"/CN={address}",
        cwd=root,
    )  # fmt: skip
    (root / "ext.cnf").write_text(
        f"subjectAltName=IP:{address},DNS:localhost\nextendedKeyUsage=serverAuth\n"
    )
    _run(
        "openssl", "x509", "-req", "-in", "server.csr", "-CA", "ca.pem",
        "-CAkey", "ca-key.pem", "-CAcreateserial", "-out", "cert.pem",
        "-days", "1", "-extfile", "ext.cnf",
        cwd=root,
    )  # fmt: skip


def _wait_ready(host: str, ca: Path, process: subprocess.Popen, log: Path) -> None:
    """Wait until the registry answers ``/v2/`` over TLS (with 401: it wants
    credentials); fail with its output if it exits or stays silent."""
    context = ssl.create_default_context(cafile=str(ca))
    deadline = time.monotonic() + READY_TIMEOUT
    while True:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited:\n{log.read_text()}")
        try:
            urllib.request.urlopen(f"https://{host}/v2/", context=context, timeout=5)
        except urllib.error.HTTPError as e:
            if e.code == 401:
                return
            raise
        except OSError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"docker-registry did not answer in {READY_TIMEOUT} s:\n"
                    f"{log.read_text()}"
                ) from None
            # The process is starting: a connection is refused until it listens.
            time.sleep(0.1)
        else:
            raise RuntimeError("the registry answered /v2/ without credentials")


@contextlib.contextmanager
def serve(root: Path, address: str = "127.0.0.1") -> Iterator[Registry]:
    """Run a registry on ``address`` with its files under ``root``; stop it
    and remove what it made, ``root`` and its CA in `CERTS_D` included, after.

    The Engine treats a registry on a loopback address as insecure (it would
    fall back to plain HTTP), so only one on another address has its TLS
    verified against that CA."""
    binary = shutil.which("docker-registry")
    if binary is None:
        raise RuntimeError(
            "docker-registry is not installed (Debian's docker-registry package; "
            "scripts/build.sh installs it)"
        )
    root.mkdir(parents=True, exist_ok=True)
    _certificates(root, address)
    htpasswd = subprocess.run(
        ["htpasswd", "-Bbn", USER, PASSWORD], capture_output=True, text=True, check=True
    )
    (root / "htpasswd").write_text(htpasswd.stdout)
    host = f"{address}:{free_port(address)}"
    (root / "config.yml").write_text(
        json.dumps(
            {
                "version": 0.1,
                "log": {"level": "info", "accesslog": {"disabled": False}},
                "storage": {
                    "filesystem": {"rootdirectory": str(root / "data")},
                    "delete": {"enabled": True},
                },
                "http": {
                    "addr": host,
                    "secret": "wool-docker-test",
                    "tls": {
                        "certificate": str(root / "cert.pem"),
                        "key": str(root / "key.pem"),
                    },
                },
                "auth": {
                    "htpasswd": {
                        "realm": "wool-docker-test",
                        "path": str(root / "htpasswd"),
                    }
                },
            }
        )
    )
    log = root / "registry.log"
    made_certs_d = not CERTS_D.exists()
    trust = CERTS_D / host
    with open(log, "wb") as out:
        process = subprocess.Popen(
            [binary, "serve", str(root / "config.yml")],
            stdout=out,
            stderr=subprocess.STDOUT,
            stdin=subprocess.DEVNULL,
        )
    try:
        trust.mkdir(parents=True, exist_ok=True)
        shutil.copy(root / "ca.pem", trust / "ca.crt")
        _wait_ready(host, root / "ca.pem", process, log)
        yield Registry(host=host, log=log, root=root)
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        shutil.rmtree(trust, ignore_errors=True)
        if made_certs_d:
            # Only if nobody else put a registry's CA there meanwhile.
            with contextlib.suppress(OSError):
                CERTS_D.rmdir()
        shutil.rmtree(root, ignore_errors=True)
