"""A TLS Engine endpoint for tests: certificates made here, and a relay that
terminates TLS (client certificate required) in front of an Engine's socket.

The certificates are made with the ``openssl`` command: a CA, a server
certificate for one IP address, and a client certificate, laid out as
``DOCKER_CERT_PATH`` expects (``ca.pem``, ``cert.pem``, ``key.pem``) with the
server's pair beside them. The relay listens on an address the test chooses
(one of its own private network) and forwards each connection's bytes to the
Engine's unix socket; it stops when its context ends.
"""

from __future__ import annotations

import asyncio
import contextlib
import ssl
import subprocess
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

DAYS = "2"
"""Days the certificates are valid: the test's lifetime, with margin."""


def _openssl(*args: str, cwd: Path) -> None:
    result = subprocess.run(
        ["openssl", *args], cwd=cwd, capture_output=True, text=True, check=False
    )
    if result.returncode != 0:
        raise RuntimeError(f"openssl {' '.join(args)}: {result.stderr.strip()}")


def make_certificates(directory: Path, ip: str) -> Path:
    """A CA, a server certificate for ``ip`` and a client certificate.

    :param directory:
        Where they are written; it exists and the caller removes it.
    :returns:
        ``directory``, with ``ca.pem``, ``cert.pem`` and ``key.pem`` (the
        client's, as ``DOCKER_CERT_PATH`` wants) and ``server-cert.pem`` and
        ``server-key.pem``. Every file is readable by all: containers of the
        image under test read them as an unprivileged user.
    """
    key = ("-newkey", "rsa:2048", "-nodes")
    _openssl(
        "req", "-x509", *key, "-days", DAYS, "-subj", "/CN=wool-docker test CA",
        "-keyout", "ca-key.pem", "-out", "ca.pem", cwd=directory,
    )  # fmt: skip
    (directory / "server.ext").write_text(
        f"subjectAltName = IP:{ip}\nextendedKeyUsage = serverAuth\n"
    )
    (directory / "client.ext").write_text("extendedKeyUsage = clientAuth\n")
    for name, subject in (("server", f"/CN={ip}"), ("client", "/CN=client")):
        _openssl(
            "req", "-new", *key, "-subj", subject,
            "-keyout", f"{name}-key.pem", "-out", f"{name}.csr", cwd=directory,
        )  # fmt: skip
        _openssl(
            "x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem",
            "-CAkey", "ca-key.pem", "-CAcreateserial", "-days", DAYS,
            "-extfile", f"{name}.ext", "-out", f"{name}-cert.pem", cwd=directory,
        )  # fmt: skip
    (directory / "client-cert.pem").rename(directory / "cert.pem")
    (directory / "client-key.pem").rename(directory / "key.pem")
    for path in directory.iterdir():
        path.chmod(0o644)
    directory.chmod(0o755)
    return directory


@contextlib.asynccontextmanager
async def tls_relay(
    certificates: Path, host: str, socket_path: str
) -> AsyncIterator[int]:
    """Serve TLS on ``host`` (a free port) and relay to the unix ``socket_path``.

    Clients must present a certificate signed by the CA in ``certificates``.

    :yields:
        The port it listens on.
    """
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(
        certificates / "server-cert.pem", certificates / "server-key.pem"
    )
    context.load_verify_locations(certificates / "ca.pem")
    context.verify_mode = ssl.CERT_REQUIRED
    pipes: set[asyncio.Future[Any]] = set()

    async def pipe(src: asyncio.StreamReader, dst: asyncio.StreamWriter) -> None:
        with contextlib.suppress(ConnectionError, ssl.SSLError):
            while chunk := await src.read(65536):
                dst.write(chunk)
                await dst.drain()
        with contextlib.suppress(ConnectionError, OSError, ssl.SSLError):
            dst.close()

    async def forward(
        reader: asyncio.StreamReader, writer: asyncio.StreamWriter
    ) -> None:
        upstream_reader, upstream_writer = await asyncio.open_unix_connection(
            socket_path
        )
        both = asyncio.gather(
            pipe(reader, upstream_writer), pipe(upstream_reader, writer)
        )
        pipes.add(both)
        try:
            await both
        finally:
            pipes.discard(both)

    server = await asyncio.start_server(forward, host=host, port=0, ssl=context)
    try:
        yield server.sockets[0].getsockname()[1]
    finally:
        server.close()
        # Streams left open (an event stream) would keep the server from closing.
        for both in list(pipes):
            both.cancel()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(10):
                await server.wait_closed()
