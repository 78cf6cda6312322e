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
PACKAGE_ROOT = Path(_entrypoint.__file__).parent.parent
# The worker imports this module's routines by reference, so by this name.
MODULE_ROOT = Path(__file__).parents[__name__.count(".")]

# Generous: a cold interpreter imports wool and grpc before it can bind.
READY_TIMEOUT = 60.0
EXIT_TIMEOUT = 30.0

CONTAINER_ID = "6f8804658fec75b01c506f38464cd62c5bb46b4dc3ddb5a2ab3bb38b5fe959b0"

# Captured from a Docker 20.10 container (cgroup v1, fuse-overlayfs).
DOCKER_MOUNTINFO = f"""\
69 50 0:52 / / rw,relatime master:26 - fuse.fuse-overlayfs fuse-overlayfs rw
70 69 0:54 / /proc rw,nosuid,nodev,noexec,relatime - proc proc rw
86 69 254:0 /var/lib/docker/containers/{CONTAINER_ID}/resolv.conf /etc/resolv.conf \
rw,relatime - ext4 /dev/vda rw,discard
87 69 254:0 /var/lib/docker/containers/{CONTAINER_ID}/hostname /etc/hostname \
rw,relatime - ext4 /dev/vda rw,discard
88 69 254:0 /var/lib/docker/containers/{CONTAINER_ID}/hosts /etc/hosts \
rw,relatime - ext4 /dev/vda rw,discard
"""

DOCKER_CGROUP_V1 = f"""\
9:name=systemd:/docker/{CONTAINER_ID}
8:pids:/docker/{CONTAINER_ID}
4:memory:/docker/{CONTAINER_ID}
0::/
"""

HOST_MOUNTINFO = """\
22 27 0:21 / /proc rw,relatime - proc proc rw
23 27 0:22 / /sys rw,relatime - sysfs sysfs rw
"""

HOST_CGROUP = """\
4:memory:/user.slice
0::/
"""


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
        It should cancel the routine, then exit 0
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

            # Assert
            with pytest.raises(asyncio.CancelledError):
                async with asyncio.timeout(30):
                    await task
        finally:
            task.cancel()

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
    assert stderr.strip().splitlines() == [
        "wool-docker: WOOL_EXTRA: must be a JSON object, not list"
    ]


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


@pytest.mark.parametrize(
    ("mountinfo", "cgroup"),
    [
        (DOCKER_MOUNTINFO, HOST_CGROUP),
        (HOST_MOUNTINFO, DOCKER_CGROUP_V1),
        (DOCKER_MOUNTINFO, DOCKER_CGROUP_V1),
        (HOST_MOUNTINFO, f"0::/system.slice/docker-{CONTAINER_ID}.scope\n"),
        (
            "1 0 0:1 /var/lib/containers/storage/overlay-containers/"
            f"{CONTAINER_ID}/userdata/hostname /etc/hostname rw - xfs /dev/sda rw\n",
            HOST_CGROUP,
        ),
    ],
    ids=["mountinfo", "cgroup-v1", "both", "systemd-scope", "podman"],
)
def test__find_container_id_with_container_text(mountinfo: str, cgroup: str):
    """Test finding the container id in /proc/self text from a container.

    Given:
        mountinfo or cgroup text naming a container
    When:
        The container id is looked up
    Then:
        It should return the full 64-hex id
    """
    # Act
    found = _entrypoint._find_container_id(mountinfo, cgroup)

    # Assert
    assert found == CONTAINER_ID


def test__find_container_id_on_host():
    """Test finding the container id outside any container.

    Given:
        mountinfo and cgroup text from a host
    When:
        The container id is looked up
    Then:
        It should return None
    """
    # Act
    found = _entrypoint._find_container_id(HOST_MOUNTINFO, HOST_CGROUP)

    # Assert
    assert found is None


def test__load_config_with_empty_environment():
    """Test the configuration an empty environment gives.

    Given:
        No WOOL_* variables
    When:
        The configuration is loaded
    Then:
        It should hold the documented defaults and leave the uid to derive
    """
    # Act
    config = _entrypoint._load_config({})

    # Assert
    assert config == _entrypoint._Config(
        host="0.0.0.0",
        port=50051,
        uid=None,
        tags=frozenset(),
        extra={},
        options={},
        identity=None,
        tls=None,
        tls_mutual=True,
        shutdown_grace=60.0,
        stdin_control=False,
        deregister_delay=1.0,
    )


def test__default_uid_in_container(mocker):
    """Test the default worker uid inside a container.

    Given:
        /proc/self naming a container
    When:
        The default uid is derived
    Then:
        It should be the first 32 hex digits of the container id
    """
    # Arrange
    mocker.patch.object(_entrypoint, "_find_container_id", return_value=CONTAINER_ID)

    # Act
    uid = _entrypoint._default_uid()

    # Assert
    assert uid == uuid.UUID(hex=CONTAINER_ID[:32])


def test__default_uid_outside_container(mocker):
    """Test the default worker uid outside any container.

    Given:
        /proc/self naming no container
    When:
        The default uid is derived
    Then:
        It should be a random (version 4) UUID
    """
    # Arrange
    mocker.patch.object(_entrypoint, "_find_container_id", return_value=None)

    # Act
    uid = _entrypoint._default_uid()

    # Assert
    assert uid.version == 4


@pytest.mark.parametrize(
    ("environ", "variable"),
    [
        ({"WOOL_PORT": "http"}, "WOOL_PORT"),
        ({"WOOL_PORT": "70000"}, "WOOL_PORT"),
        ({"WOOL_UID": "not-a-uuid"}, "WOOL_UID"),
        ({"WOOL_EXTRA": "{"}, "WOOL_EXTRA"),
        ({"WOOL_EXTRA": '{"n": 1}'}, "WOOL_EXTRA"),
        ({"WOOL_OPTIONS": '"x"'}, "WOOL_OPTIONS"),
        ({"WOOL_TLS_CA": "/ca.pem"}, "WOOL_TLS_CERT"),
        (
            {
                "WOOL_TLS_CA": "/nonexistent/ca",
                "WOOL_TLS_CERT": "/nonexistent/cert",
                "WOOL_TLS_KEY": "/nonexistent/key",
            },
            "WOOL_TLS_CA",
        ),
        ({"WOOL_TLS_MUTUAL": "maybe"}, "WOOL_TLS_MUTUAL"),
        ({"WOOL_IDENTITY": "worker.example"}, "WOOL_IDENTITY"),
        ({"WOOL_SHUTDOWN_GRACE": "0"}, "WOOL_SHUTDOWN_GRACE"),
        ({"WOOL_SHUTDOWN_GRACE": "soon"}, "WOOL_SHUTDOWN_GRACE"),
        ({"WOOL_DEREGISTER_DELAY": "-1"}, "WOOL_DEREGISTER_DELAY"),
        ({"WOOL_DEREGISTER_DELAY": "later"}, "WOOL_DEREGISTER_DELAY"),
        ({"WOOL_DOCKER_STDIN_CONTROL": "2"}, "WOOL_DOCKER_STDIN_CONTROL"),
    ],
)
def test__load_config_with_bad_variable(environ: dict[str, str], variable: str):
    """Test loading a configuration with one bad variable.

    Given:
        An environment with one malformed or inconsistent variable
    When:
        The configuration is loaded
    Then:
        It should raise a configuration error naming that variable
    """
    # Act & assert
    with pytest.raises(_entrypoint._ConfigError) as caught:
        _entrypoint._load_config({"WOOL_UID": str(uuid.uuid4()), **environ})
    assert caught.value.variable == variable


def test__worker_options_with_compression_name():
    """Test WOOL_OPTIONS naming a compression algorithm.

    Given:
        Channel options with compression given by name and a size limit
    When:
        wool's WorkerOptions are built from them
    Then:
        It should carry the matching grpc.Compression member and the limit
    """
    # Arrange
    import grpc

    # Act
    options = _entrypoint._worker_options(
        {"compression": "Gzip", "max_send_message_length": 1024}
    )

    # Assert
    assert options.channel.compression is grpc.Compression.Gzip
    assert options.channel.max_send_message_length == 1024


@pytest.mark.parametrize(
    ("line", "grace"),
    [("stop 0", 0.0), ("stop -1", -1.0), ("  stop 2.5  ", 2.5), ("", None)],
)
def test__parse_control_line_with_valid_line(line: str, grace: float | None):
    """Test parsing a valid owner command.

    Given:
        A stop command or a blank line
    When:
        It is parsed
    Then:
        It should return the grace, or None for the blank line
    """
    # Act & assert
    assert _entrypoint._parse_control_line(line) == grace


@pytest.mark.parametrize("line", ["stop", "stop now", "stop nan", "halt 0"])
def test__parse_control_line_with_invalid_line(line: str):
    """Test parsing a line that is not a command.

    Given:
        A line that is not "stop <grace>"
    When:
        It is parsed
    Then:
        It should raise ValueError
    """
    # Act & assert
    with pytest.raises(ValueError):
        _entrypoint._parse_control_line(line)


@pytest.mark.parametrize(
    ("euid", "environ", "refused"),
    [
        (0, {}, True),
        (0, {"WOOL_ALLOW_ROOT": "0"}, True),
        (0, {"WOOL_ALLOW_ROOT": "1"}, False),
        (65532, {}, False),
    ],
)
def test__refuse_root(mocker, euid, environ, refused):
    """Test the entry point's refusal to serve routines as root.

    Given:
        An effective uid and a ``WOOL_ALLOW_ROOT`` setting
    When:
        The entry point checks its user
    Then:
        It should refuse uid 0 unless ``WOOL_ALLOW_ROOT`` is true, naming
        the variable, and accept any other uid
    """
    # Arrange
    mocker.patch.object(_entrypoint.os, "geteuid", return_value=euid)

    # Act & assert
    if refused:
        with pytest.raises(_entrypoint._ConfigError) as raised:
            _entrypoint._refuse_root(environ)
        assert raised.value.variable == "WOOL_ALLOW_ROOT"
    else:
        _entrypoint._refuse_root(environ)


def test__stopper_request_schedules_before_it_logs(mocker):
    """Test that a stop does not wait on the worker's own log output.

    Given:
        A `_Stopper` and a logger whose output would block (a routine holds
        the container's stderr: a full pipe, an owner slow to read)
    When:
        A stop is requested
    Then:
        The stop should be scheduled before anything is logged
    """
    # Arrange
    order = mocker.Mock()
    mocker.patch.object(_entrypoint.logger, "info", order.log)
    stopper = _entrypoint._Stopper(mocker.Mock(), mocker.Mock(), order.schedule)

    # Act
    stopper.request(0.0, "stdin 'stop 0'")

    # Assert
    assert [c[0] for c in order.mock_calls] == ["schedule", "log"]
