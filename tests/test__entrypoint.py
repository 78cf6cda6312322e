"""Tests for the worker container entry point, run as a host subprocess."""

from __future__ import annotations

import asyncio
import json
import os
import shutil
import signal
import socket
import sys
import uuid
from collections.abc import AsyncIterator
from collections.abc import Awaitable
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
import pytest_asyncio
import wool
from wool import protocol

from wool_docker import _entrypoint
from wool_docker._entrypoint import READY_PREFIX

# Where the wool_docker under test lives, handed on to the subprocesses.
PACKAGE_ROOT = Path(_entrypoint.__file__).parents[2]
# The worker imports this module's routines by reference, so by this name.
MODULE_ROOT = Path(__file__).parents[__name__.count(".")]

# Generous: a cold interpreter imports wool and grpc before it can bind.
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0


@wool.routine
async def touch_then_sleep(path: str, seconds: float) -> str:
    """Mark the routine as started, then hold the worker busy for a while."""
    Path(path).touch()
    await asyncio.sleep(seconds)
    return "finished"


@wool.routine
async def add(a: int, b: int) -> int:
    """Return the sum, computed on the worker."""
    return a + b


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _environment(port: int, **overrides: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("WOOL_")}
    paths = [str(PACKAGE_ROOT), str(MODULE_ROOT), os.environ.get("PYTHONPATH", "")]
    env["PYTHONPATH"] = os.pathsep.join(p for p in paths if p)
    env["WOOL_BIND_HOST"] = "127.0.0.1"
    env["WOOL_PORT"] = str(port)
    # These tests may run as root (CI does); the image's user is not root.
    env["WOOL_ALLOW_ROOT"] = "1"
    env.update(overrides)
    return env


class _Worker:
    """A running entry point and the channels to talk to it."""

    def __init__(self, process: asyncio.subprocess.Process, port: int, log: Path):
        self.process = process
        self.port = port
        self.log = log

    async def ready(self) -> dict[str, Any]:
        """Wait for the ready line and return its JSON payload."""
        assert self.process.stdout is not None
        async with asyncio.timeout(READY_TIMEOUT):
            while True:
                line = await self.process.stdout.readline()
                if not line:
                    pytest.fail(f"exited before ready:\n{self.log.read_text()}")
                text = line.decode()
                if text.startswith(READY_PREFIX):
                    assert text.endswith("\n")
                    return json.loads(text[len(READY_PREFIX) :])

    async def exit_code(self) -> int:
        """Wait for the process to exit and return its code."""
        async with asyncio.timeout(EXIT_TIMEOUT):
            return await self.process.wait()

    async def send(self, data: bytes) -> None:
        assert self.process.stdin is not None
        self.process.stdin.write(data)
        await self.process.stdin.drain()

    def close_stdin(self) -> None:
        assert self.process.stdin is not None
        self.process.stdin.close()


Spawn = Callable[..., Awaitable[_Worker]]


@pytest_asyncio.fixture
async def spawn(tmp_path: Path) -> AsyncIterator[Spawn]:
    """Start entry points on free ports; kill whatever is left at teardown."""
    workers: list[_Worker] = []

    async def start(**env: str) -> _Worker:
        port = _free_port()
        log = tmp_path / f"worker-{len(workers)}.log"
        with log.open("wb") as stderr:
            process = await asyncio.create_subprocess_exec(
                sys.executable,
                "-m",
                "wool_docker._entrypoint",
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
                stderr=stderr,
                env=_environment(port, **env),
            )
        worker = _Worker(process, port, log)
        workers.append(worker)
        return worker

    try:
        yield start
    finally:
        for worker in workers:
            if worker.process.returncode is None:
                # SIGTERM first so wool removes its socket directory in /tmp.
                worker.process.send_signal(signal.SIGTERM)
                try:
                    async with asyncio.timeout(10):
                        await worker.process.wait()
                except TimeoutError:
                    worker.process.kill()
            await worker.process.wait()
            if worker.process.stdin is not None:
                worker.process.stdin.close()


async def _run(*args: str, env: dict[str, str]) -> tuple[int, str]:
    """Run a short-lived command; return its exit code and stderr."""
    process = await asyncio.create_subprocess_exec(
        *args,
        stdin=asyncio.subprocess.DEVNULL,
        stdout=asyncio.subprocess.PIPE,
        stderr=asyncio.subprocess.PIPE,
        env=env,
    )
    try:
        async with asyncio.timeout(EXIT_TIMEOUT):
            _, stderr = await process.communicate()
    finally:
        if process.returncode is None:
            process.kill()
            await process.wait()
    assert process.returncode is not None
    return process.returncode, stderr.decode()


def _metadata(ready: dict[str, Any], port: int) -> wool.WorkerMetadata:
    return wool.WorkerMetadata(
        uid=uuid.UUID(ready["uid"]),
        address=f"127.0.0.1:{port}",
        pid=ready["pid"],
        version=ready["version"],
        secure=ready["secure"],
    )


@pytest.mark.asyncio
async def test_main_announces_ready_line(spawn: Spawn):
    """Test the ready line a started worker prints.

    Given:
        A worker configured with a uid, tags and extra metadata
    When:
        The server has bound its port
    Then:
        It should print one ready line whose JSON describes the worker
    """
    # Arrange
    uid = uuid.uuid4()
    worker = await spawn(
        WOOL_UID=str(uid), WOOL_TAGS="gpu, ,batch,", WOOL_EXTRA='{"zone":"a"}'
    )

    # Act
    ready = await worker.ready()

    # Assert
    options = ready.pop("options")
    assert options["compression"] == 0 and "keepalive_time_ms" in options
    assert ready == {
        "uid": str(uid),
        "address": f"127.0.0.1:{worker.port}",
        "port": worker.port,
        "pid": worker.process.pid,
        "version": protocol.__version__,
        "secure": False,
        "identity": None,
        "tags": ["batch", "gpu"],
        "extra": {"zone": "a"},
    }
    worker.process.send_signal(signal.SIGTERM)
    assert await worker.exit_code() == 0
    assert worker.process.stdout is not None
    assert await worker.process.stdout.read() == b""


@pytest.mark.asyncio
async def test_main_serves_wool_rpc(spawn: Spawn):
    """Test that the worker answers wool's own RPCs.

    Given:
        A ready worker
    When:
        A wool WorkerConnection asks how long it has been idle
    Then:
        It should answer with a non-negative duration
    """
    # Arrange
    worker = await spawn()
    await worker.ready()
    connection = wool.WorkerConnection(f"127.0.0.1:{worker.port}")

    # Act
    try:
        idle = await connection.idle(timeout=10)
    finally:
        await connection.close()

    # Assert
    assert idle >= 0


@pytest.mark.asyncio
@pytest.mark.skipif(shutil.which("openssl") is None, reason="needs the openssl CLI")
async def test_main_serves_mutual_tls(spawn: Spawn, tmp_path: Path):
    """Test a worker configured for mutual TLS.

    Given:
        WOOL_TLS_* naming a self-signed certificate and WOOL_IDENTITY its name
    When:
        The worker starts and a client holding the same certificate connects
    Then:
        It should announce itself as secure with that identity and answer
    """
    # Arrange
    key, cert = tmp_path / "key.pem", tmp_path / "cert.pem"
    code, stderr = await _run(
        "openssl", "req", "-x509", "-newkey", "ec",
        "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes", "-days", "1",
        "-keyout", str(key), "-out", str(cert), "-subj", "/CN=worker.test",
        "-addext", "subjectAltName=DNS:worker.test,IP:127.0.0.1",
        env=dict(os.environ),
    )  # fmt: skip
    assert code == 0, stderr
    worker = await spawn(
        WOOL_TLS_CA=str(cert),
        WOOL_TLS_CERT=str(cert),
        WOOL_TLS_KEY=str(key),
        WOOL_IDENTITY="worker.test",
    )

    # Act
    ready = await worker.ready()
    connection = wool.WorkerConnection(
        f"127.0.0.1:{worker.port}",
        credentials=wool.WorkerCredentials.from_files(
            ca_path=cert, key_path=key, cert_path=cert
        ),
    )
    try:
        idle = await connection.idle(timeout=10)
    finally:
        await connection.close()

    # Assert
    assert ready["secure"] is True
    assert ready["identity"] == "worker.test"
    assert idle >= 0


@pytest.mark.asyncio
async def test_main_runs_dispatched_routine(spawn: Spawn):
    """Test dispatching a real routine to the worker.

    Given:
        A ready worker and a proxy over it as a static worker
    When:
        A wool routine is awaited
    Then:
        It should return the result computed on the worker
    """
    # Arrange
    worker = await spawn()
    ready = await worker.ready()

    # Act
    async with asyncio.timeout(30):
        async with wool.WorkerProxy(workers=[_metadata(ready, worker.port)]):
            result = await add(2, 3)

    # Assert
    assert result == 5


@pytest.mark.asyncio
async def test_main_sigterm_drains_in_flight_routine(spawn: Spawn, tmp_path: Path):
    """Test SIGTERM while a routine runs.

    Given:
        A worker running a routine that is still sleeping
    When:
        The worker receives SIGTERM
    Then:
        It should let the routine finish, then exit 0
    """
    # Arrange
    worker = await spawn()
    ready = await worker.ready()
    started = tmp_path / "started"

    async with wool.WorkerProxy(workers=[_metadata(ready, worker.port)]):
        task = asyncio.create_task(touch_then_sleep(str(started), 2.0))
        try:
            async with asyncio.timeout(30):
                while not started.exists():
                    await asyncio.sleep(0.05)

            # Act
            worker.process.send_signal(signal.SIGTERM)
            async with asyncio.timeout(30):
                result = await task
        finally:
            task.cancel()

    # Assert
    assert result == "finished"
    assert await worker.exit_code() == 0


@pytest.mark.asyncio
async def test_main_stdin_stop_zero_cancels_in_flight_routine(
    spawn: Spawn, tmp_path: Path
):
    """Test "stop 0" on stdin while a routine runs.

    Given:
        A worker under stdin control running a routine that is still sleeping
    When:
        The owner writes "stop 0"
    Then:
        It should cancel the routine (its call ends, cancelled or refused by
        the stopping server, long before the sleep is over), then exit 0
    """
    # Arrange
    worker = await spawn(WOOL_DOCKER_STDIN_CONTROL="1")
    ready = await worker.ready()
    started = tmp_path / "started"

    async with wool.WorkerProxy(workers=[_metadata(ready, worker.port)]):
        task = asyncio.create_task(touch_then_sleep(str(started), 60.0))
        try:
            async with asyncio.timeout(30):
                while not started.exists():
                    await asyncio.sleep(0.05)

            # Act
            await worker.send(b"stop 0\n")
            async with asyncio.timeout(30):
                await asyncio.wait([task])
        finally:
            task.cancel()

    # Assert
    # The cancellation reaches the caller as a cancellation, or, when the
    # server's shutdown beats it to the caller, as that shutdown (UNAVAILABLE,
    # GOAWAY; seen once under load): either way the call ended without a result.
    if not task.cancelled():
        error = task.exception()
        assert error is not None and "UNAVAILABLE" in str(error), error
    assert await worker.exit_code() == 0


@pytest.mark.asyncio
async def test_main_sigterm_exits_zero(spawn: Spawn):
    """Test SIGTERM on an idle worker.

    Given:
        A ready, idle worker
    When:
        It receives SIGTERM
    Then:
        It should exit 0
    """
    # Arrange
    worker = await spawn()
    await worker.ready()

    # Act
    worker.process.send_signal(signal.SIGTERM)

    # Assert
    assert await worker.exit_code() == 0


@pytest.mark.asyncio
async def test_main_sigterm_serves_during_deregister_delay(spawn: Spawn):
    """Test that SIGTERM leaves time for discovery to drop the worker.

    Given:
        A ready worker with a 30 s deregistration delay
    When:
        It receives SIGTERM, then a wool RPC, then SIGINT
    Then:
        It should still answer the RPC after SIGTERM, and exit 0 on SIGINT
        without waiting out the delay
    """
    # Arrange
    worker = await spawn(WOOL_DEREGISTER_DELAY="30")
    await worker.ready()
    connection = wool.WorkerConnection(f"127.0.0.1:{worker.port}")

    # Act
    worker.process.send_signal(signal.SIGTERM)
    try:
        idle = await connection.idle(timeout=10)
    finally:
        await connection.close()
    worker.process.send_signal(signal.SIGINT)

    # Assert
    assert idle >= 0
    assert await worker.exit_code() == 0


@pytest.mark.asyncio
async def test_main_sigint_exits_zero(spawn: Spawn):
    """Test SIGINT on an idle worker.

    Given:
        A ready, idle worker
    When:
        It receives SIGINT
    Then:
        It should exit 0 without a KeyboardInterrupt
    """
    # Arrange
    worker = await spawn()
    await worker.ready()

    # Act
    worker.process.send_signal(signal.SIGINT)

    # Assert
    assert await worker.exit_code() == 0
    assert "KeyboardInterrupt" not in worker.log.read_text()


@pytest.mark.asyncio
async def test_main_stdin_stop_exits_zero(spawn: Spawn):
    """Test the stdin stop command.

    Given:
        A ready worker under stdin control
    When:
        The owner writes "stop 0"
    Then:
        It should exit 0
    """
    # Arrange
    worker = await spawn(WOOL_DOCKER_STDIN_CONTROL="1")
    await worker.ready()

    # Act
    await worker.send(b"stop 0\n")

    # Assert
    assert await worker.exit_code() == 0
    assert "cancelling in-flight tasks" in worker.log.read_text()


@pytest.mark.asyncio
async def test_main_stdin_unknown_line_is_ignored(spawn: Spawn):
    """Test an unknown stdin command.

    Given:
        A ready worker under stdin control
    When:
        The owner writes a line that is no command, then "stop -1"
    Then:
        It should warn about the first line and stop on the second
    """
    # Arrange
    worker = await spawn(WOOL_DOCKER_STDIN_CONTROL="1")
    await worker.ready()

    # Act
    await worker.send(b"reboot now\nstop -1\n")

    # Assert
    assert await worker.exit_code() == 0
    log = worker.log.read_text()
    assert "unknown command 'reboot now'" in log
    assert "stdin 'stop -1': stopping (draining in-flight tasks)" in log


@pytest.mark.asyncio
async def test_main_stdin_eof_with_control_exits(spawn: Spawn):
    """Test the owner going away under stdin control.

    Given:
        A ready worker under stdin control
    When:
        Its stdin reaches end of file
    Then:
        It should stop and exit 0
    """
    # Arrange
    worker = await spawn(WOOL_DOCKER_STDIN_CONTROL="1")
    await worker.ready()

    # Act
    worker.close_stdin()

    # Assert
    assert await worker.exit_code() == 0
    assert "stdin closed" in worker.log.read_text()


@pytest.mark.asyncio
async def test_main_stdin_eof_without_control_keeps_serving(spawn: Spawn):
    """Test end of file on stdin without stdin control.

    Given:
        A ready worker without stdin control
    When:
        Its stdin reaches end of file
    Then:
        It should keep serving until SIGTERM, then exit 0
    """
    # Arrange
    worker = await spawn()
    await worker.ready()

    # Act
    worker.close_stdin()

    # Assert
    with pytest.raises(TimeoutError):
        await asyncio.wait_for(asyncio.shield(worker.process.wait()), timeout=1.0)
    connection = wool.WorkerConnection(f"127.0.0.1:{worker.port}")
    try:
        assert await connection.idle(timeout=10) >= 0
    finally:
        await connection.close()
    worker.process.send_signal(signal.SIGTERM)
    assert await worker.exit_code() == 0


@pytest.mark.asyncio
async def test_main_bad_extra_exits_2():
    """Test a WOOL_EXTRA that is not a JSON object.

    Given:
        WOOL_EXTRA set to a JSON list
    When:
        The entry point starts
    Then:
        It should exit 2 with one stderr line naming WOOL_EXTRA
    """
    # Arrange
    env = _environment(_free_port(), WOOL_EXTRA="[1, 2]")

    # Act
    code, stderr = await _run(sys.executable, "-m", "wool_docker._entrypoint", env=env)

    # Assert
    assert code == 2
    (line,) = stderr.strip().splitlines()
    assert line.startswith("wool-docker: WOOL_EXTRA: extra metadata must map strings")
    assert "sequence" in line


@pytest.mark.asyncio
async def test_main_bad_options_exits_2():
    """Test a WOOL_OPTIONS naming an unknown option.

    Given:
        WOOL_OPTIONS with a field ChannelOptions does not have
    When:
        The entry point starts
    Then:
        It should exit 2 with one stderr line naming WOOL_OPTIONS
    """
    # Arrange
    env = _environment(_free_port(), WOOL_OPTIONS='{"max_frobs": 1}')

    # Act
    code, stderr = await _run(sys.executable, "-m", "wool_docker._entrypoint", env=env)

    # Assert
    assert code == 2
    [line] = stderr.strip().splitlines()
    assert line.startswith("wool-docker: WOOL_OPTIONS: unknown option 'max_frobs'")


@pytest.mark.asyncio
async def test_main_health_against_running_server(spawn: Spawn):
    """Test the health check against a serving worker.

    Given:
        A ready worker
    When:
        --health runs with the same WOOL_PORT
    Then:
        It should exit 0
    """
    # Arrange
    worker = await spawn()
    await worker.ready()
    env = _environment(worker.port)

    # Act
    code, _ = await _run(
        sys.executable, "-m", "wool_docker._entrypoint", "--health", env=env
    )

    # Assert
    assert code == 0


@pytest.mark.asyncio
async def test_main_health_against_closed_port():
    """Test the health check with nothing listening.

    Given:
        A WOOL_PORT nothing listens on
    When:
        --health runs
    Then:
        It should exit 1
    """
    # Arrange
    env = _environment(_free_port())

    # Act
    code, stderr = await _run(
        sys.executable, "-m", "wool_docker._entrypoint", "--health", env=env
    )

    # Assert
    assert code == 1
    assert "unreachable" in stderr


@pytest.mark.asyncio
async def test_main_health_does_not_import_wool():
    """Test that health mode stays light.

    Given:
        A fresh interpreter
    When:
        It runs the entry point's health mode
    Then:
        It should not have imported wool or grpc
    """
    # Arrange
    script = (
        "import sys\n"
        "from wool_docker import _entrypoint\n"
        "_entrypoint.main(['--health'])\n"
        "loaded = [m for m in sys.modules if m.split('.')[0] in ('wool', 'grpc')]\n"
        "sys.exit(f'imported {loaded}' if loaded else 0)\n"
    )

    # Act
    code, stderr = await _run(
        sys.executable, "-c", script, env=_environment(_free_port())
    )

    # Assert
    assert code == 0, stderr
