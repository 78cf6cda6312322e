"""A worker container is a sandbox: what a routine can do in a default
`DockerWorker`, and what each documented opt-out gives back.

Each test attacks from a routine inside the container (`routines.probe`,
`routines.spawn_threads`) and reads the container's configuration from the
Engine, so both what the Engine was told and what the kernel enforces are
checked.
"""

from __future__ import annotations

import asyncio
import json

import pytest
import wool

from wool_docker import ContainerFailedError
from wool_docker.pytest import RUN_ID
from wool_docker.pytest import RUN_LABEL

from . import routines

pytestmark = pytest.mark.integration

TIMEOUT = 90.0
"""Seconds any single wait of these tests may take."""

NO_CAPABILITIES = "0000000000000000"
"""``CapEff`` with every capability dropped."""

CAP_NET_RAW = 1 << 13
"""The capability bit a raw packet socket needs."""


async def _host_config(docker, container: str) -> dict:
    """The container's ``HostConfig`` and ``Config`` as the Engine reports them."""
    out = await docker.arun("container", "inspect", container)
    (inspected,) = json.loads(out)
    return {**inspected["HostConfig"], "User": inspected["Config"]["User"]}


class TestDefaultSandbox:
    @pytest.mark.asyncio
    async def test_start_with_defaults(self, case, docker):
        """Test what a routine can reach in a default worker.

        Given:
            A pool of one `DockerWorker` with no confinement keyword
        When:
            A routine probes its container
        Then:
            It should run as uid 65532 with no effective capability and
            no_new_privs set, fail to open a raw packet socket, write
            neither ``/``, ``/usr`` nor the image's environment, write only
            its size-bounded tmpfs ``/tmp`` and home; and the Engine should
            hold the documented limits (pids, OOM score, nofile, a bounded
            ``local`` log)
        """
        # Arrange
        pool = wool.WorkerPool(
            spawn=1, worker=lambda *tags, **kw: case.worker(*tags, **kw)
        )

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            found = await routines.probe()
            (worker,) = case.workers
            config = await _host_config(docker, worker.container)

        # Assert
        assert (found["uid"], found["gid"]) == (65532, 65532)
        assert found["cap_eff"] == NO_CAPABILITIES
        assert found["no_new_privs"] == "1"
        assert found["raw_socket"] != "opened"
        assert found["writable"] == {
            "/": False,
            "/usr": False,
            "/opt/wool": False,
            "/tmp": True,
            "/home/wool": True,
        }
        assert found["mounts"]["/tmp"] == "tmpfs"
        assert found["mounts"]["/home/wool"] == "tmpfs"
        assert config["User"] == "65532:65532"
        assert config["CapDrop"] == ["ALL"]
        assert config["SecurityOpt"] == ["no-new-privileges:true"]
        assert config["ReadonlyRootfs"] is True
        assert config["PidsLimit"] == 512
        assert config["OomScoreAdj"] == 500
        assert config["Ulimits"] == [{"Name": "nofile", "Soft": 8192, "Hard": 8192}]
        assert config["LogConfig"] == {
            "Type": "local",
            "Config": {"max-size": "10m", "max-file": "3"},
        }
        assert "size=" in config["Tmpfs"]["/tmp"]
        assert "size=" in config["Tmpfs"]["/home/wool"]

    @pytest.mark.asyncio
    async def test_start_with_fork_bomb(self, case):
        """Test that a routine's processes stop at the pids limit.

        Given:
            A pool of one default `DockerWorker` (pids limit 512)
        When:
            A routine starts idle threads (tasks of the pids cgroup, as
            processes are) until it may not, at most the limit plus 64
        Then:
            Fewer than 512 should start, all are reaped, and the worker
            should still serve the next routine
        """
        # Arrange
        pool = wool.WorkerPool(
            spawn=1, worker=lambda *tags, **kw: case.worker(*tags, **kw)
        )

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            started = await routines.spawn_threads(512 + 64)
            after = await routines.hostname()
            (container,) = case.containers()

        # Assert
        assert 0 < started < 512
        assert after == container[:12]

    @pytest.mark.asyncio
    async def test_start_with_credentials_in_tmpfs(self, case, docker, credentials):
        """Test where TLS material lands under a read-only root.

        Given:
            An mTLS pool of one default (read-only) `DockerWorker`
        When:
            A routine looks at the key material's files
        Then:
            They should be mode 0400 and owned by the worker's user, on a
            tmpfs (never the image's layers or the host's disk), and absent
            from the container's configuration
        """
        # Arrange
        pool = wool.WorkerPool(
            spawn=1,
            worker=lambda *tags, **kw: case.worker(*tags, **kw),
            credentials=credentials.as_provider(peers="worker.wool.test"),
            identity="worker.wool.test",
        )

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            found = await routines.probe()
            (worker,) = case.workers
            inspected = await docker.arun("container", "inspect", worker.container)

        # Assert
        assert found["tls"] == {
            "WOOL_TLS_CA": ("0o400", 65532),
            "WOOL_TLS_CERT": ("0o400", 65532),
            "WOOL_TLS_KEY": ("0o400", 65532),
        }
        assert found["mounts"]["/run/wool-docker/tls"] == "tmpfs"
        assert "PRIVATE KEY" not in inspected

    @pytest.mark.asyncio
    async def test_start_with_socket_access(self, case):
        """Test that ``engine_access="socket"`` still reaches the Engine.

        Given:
            A pool of one default `DockerWorker` with the Engine socket
            (``engine_access="socket"``), whose user is unprivileged
        When:
            A routine asks the socket for ``/_ping``
        Then:
            The Engine should answer ``OK`` (the worker's user is in the
            socket's group), while the routine still runs as uid 65532
        """
        # Arrange
        pool = wool.WorkerPool(
            spawn=1,
            worker=lambda *tags, **kw: case.worker(*tags, engine_access="socket", **kw),
        )

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            answer = await routines.engine_ping()
            found = await routines.probe()

        # Assert
        assert answer == "OK"
        assert found["uid"] == 65532


class TestOptOuts:
    @pytest.mark.asyncio
    async def test_start_with_every_opt_out(self, case, docker):
        """Test that each confinement keyword gives back what it names.

        Given:
            A pool of one `DockerWorker` with ``user="root"``,
            ``read_only=False``, ``cap_add=["NET_RAW"]``, ``security_opt=()``,
            ``pids_limit=None``, ``oom_score_adj=None``, ``ulimits=None``,
            ``log_config=None`` and ``runtime="runc"``
        When:
            A routine probes its container
        Then:
            It should run as root with exactly ``NET_RAW``, open a raw
            socket, write ``/``, have no_new_privs unset, and the Engine
            should hold no pids limit, Docker's OOM score, no ulimits, the
            daemon's log driver and the runtime named
        """
        # Arrange
        pool = wool.WorkerPool(
            spawn=1,
            worker=lambda *tags, **kw: case.worker(
                *tags,
                user="root",
                read_only=False,
                cap_add=["NET_RAW"],
                security_opt=(),
                pids_limit=None,
                oom_score_adj=None,
                ulimits=None,
                log_config=None,
                runtime="runc",
                **kw,
            ),
        )

        # Act
        async with asyncio.timeout(TIMEOUT), pool:
            found = await routines.probe()
            (worker,) = case.workers
            config = await _host_config(docker, worker.container)
        daemon_log_driver = docker.run("info", "--format", "{{.LoggingDriver}}").stdout

        # Assert
        assert found["uid"] == 0
        assert int(found["cap_eff"], 16) == CAP_NET_RAW
        assert found["raw_socket"] == "opened"
        assert found["no_new_privs"] == "0"
        assert found["writable"]["/"] is True
        assert config["ReadonlyRootfs"] is False
        assert not config["PidsLimit"]
        assert config["OomScoreAdj"] == 0
        assert not config["Ulimits"]
        assert config["LogConfig"]["Type"] == daemon_log_driver.strip()
        assert config["Runtime"] == "runc"

    @pytest.mark.asyncio
    async def test_start_with_unknown_runtime(self, case):
        """Test a runtime the daemon does not have.

        Given:
            A `DockerWorker` with ``runtime="wool-no-such-runtime"``
        When:
            It is started
        Then:
            It should raise `ContainerFailedError` naming the runtime, and
            leave no container
        """
        # Arrange
        worker = case.worker(runtime="wool-no-such-runtime")

        # Act
        with pytest.raises(ContainerFailedError) as raised:
            async with asyncio.timeout(TIMEOUT):
                await worker.start()

        # Assert
        assert "wool-no-such-runtime" in str(raised.value)
        assert case.containers() == []


class TestImage:
    def test_entrypoint_as_root(self, docker, image):
        """Test that the worker image refuses to serve routines as root.

        Given:
            The worker image run by hand with ``--user 0`` and no
            ``WOOL_ALLOW_ROOT``
        When:
            It starts
        Then:
            It should exit 2 with one line naming ``WOOL_ALLOW_ROOT``
        """
        # Act
        refused = docker.run(
            "run",
            "--rm",
            "--label",
            f"{RUN_LABEL}={RUN_ID}",
            "--user",
            "0",
            image,
            check=False,
        )

        # Assert
        assert refused.returncode == 2
        assert "WOOL_ALLOW_ROOT" in refused.stderr

    def test_no_file_grants_privileges(self, docker, image):
        """Test that the worker image has no setuid or setgid file (CIS 4.8).

        Given:
            The worker image built by ``scripts/build.sh`` (``wool-docker
            image build``; its Debian base has ``su``, ``mount``, ``passwd``
            and more with the setuid bit)
        When:
            Root in a container of it lists every file of the image's file
            system with the setuid or setgid bit
        Then:
            There should be none
        """
        # Act
        found = docker.run(
            "run",
            "--rm",
            "--label",
            f"{RUN_LABEL}={RUN_ID}",
            "--user",
            "0",
            "--entrypoint",
            "find",
            image,
            "/",
            "-xdev",
            "-type",
            "f",
            "-perm",
            "/6000",
        )

        # Assert
        assert found.stdout.split() == []

    @pytest.mark.asyncio
    async def test_no_file_grants_privileges_to_a_routine(self, case):
        """Test what a routine finds to regain privileges through.

        Given:
            A pool of one `DockerWorker` with default keywords
        When:
            A routine walks the container's root file system for files with
            the setuid or setgid bit, as the worker's user
        Then:
            It should find none
        """
        # Arrange
        async with case.pool("docker", spawn=1):
            # Act
            found = await routines.setid_files()

        # Assert
        assert found == []
