"""Where an owner reaches its workers: the container's address or a published port.

On this machine's own Engine the owner routes to container addresses. A second
Engine in a network namespace of its own (`multinode.second_engine`, reached
over ``tcp://``) is what Docker Desktop, rootless Docker and a remote host look
like to an owner: its bridge's subnet is the machine's own, so a container
address there leads to the wrong bridge, and only ports it publishes reach its
workers.
"""

from __future__ import annotations

import asyncio
import io
import ipaddress
import json
import os
import subprocess
import sys
import tarfile
from collections.abc import Iterator
from typing import Any
from uuid import uuid4

import pytest
import wool

from wool_docker import ContainerFailedError
from wool_docker import DockerDiscovery
from wool_docker import DockerWorker
from wool_docker import EngineUnavailableError
from wool_docker import RegistryAuthError
from wool_docker import Standby
from wool_docker import _native

from . import multinode
from . import nested
from . import registry
from . import routines
from .multinode import Node
from .multinode import second_engine
from .registry import Registry

pytestmark = pytest.mark.integration

TIMEOUT = 120.0
"""Seconds any single wait of these tests may take."""


def _ps(*args: str, env: dict[str, str] | None = None) -> dict[str, str]:
    """``wool-docker ps`` in a fresh interpreter: container name → address."""
    env = {**os.environ, **(env or {})}
    result = subprocess.run(
        [sys.executable, "-m", "wool_docker.cli", "ps", *args],
        capture_output=True,
        text=True,
        env=env,
        timeout=TIMEOUT,
        check=False,
    )
    assert result.returncode == 0, result.stderr
    rows = [line.split() for line in result.stdout.splitlines()[1:]]
    return {row[4]: row[1] for row in rows}


def _bindings(docker: Any, container: str, *, asked: bool = False) -> Any:
    """The ports a container publishes, as the Engine bound them (``asked``:
    as its create asked)."""
    what = ".HostConfig.PortBindings" if asked else ".NetworkSettings.Ports"
    text = docker.run("inspect", "-f", f"{{{{json {what}}}}}", container)
    return json.loads(text.stdout) or {}


class TestOnThisMachine:
    @pytest.mark.asyncio
    async def test_default_is_the_container_address(self, case, docker):
        """Test how a worker on this machine's Engine is reached by default.

        Given:
            A `DockerWorker` with default keywords on a network of this
            machine's Engine, which this process routes to
        When:
            It is started
        Then:
            It should advertise its address on that network and publish no
            port
        """
        # Arrange
        worker = case.worker()
        subnet = docker.run(
            "network", "inspect", "-f", "{{(index .IPAM.Config 0).Subnet}}", case.network
        ).stdout.strip()

        # Act
        async with asyncio.timeout(TIMEOUT):
            await worker.start()
            try:
                address = worker.address
                bindings = _bindings(docker, worker.container, asked=True)
            finally:
                await worker.stop()

        # Assert
        assert address is not None
        host, _, port = address.rpartition(":")
        assert ipaddress.ip_address(host) in ipaddress.ip_network(subnet)
        assert port == "50051"
        assert bindings == {}

    @pytest.mark.asyncio
    async def test_published_pool_serves_a_burst_on_every_worker(self, case, docker):
        """Test a pool whose workers are reached at published ports.

        Given:
            A pool of 4 `DockerWorker`s with ``publish=True`` and wool's
            default quorum
        When:
            8 CPU-bound routines are gathered at pool entry, and another
            process lists the workers with ``wool-docker ps``
        Then:
            Every worker should run a routine; each container should publish
            its port on loopback only; and the other process should see each
            worker at ``127.0.0.1`` and its published port, as this one does
        """
        # Arrange
        pool = case.pool("docker", 4, publish=True)

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(8)))
                addresses = {w.container: w.address for w in case.workers}
                bindings = {c: _bindings(docker, c) for c in addresses}
                seen = _ps("--label", case.label)

        # Assert
        assert len({h.split("/")[0] for h in hosts}) == 4
        for container, address in addresses.items():
            (binding,) = bindings[container]["50051/tcp"]
            assert binding["HostIp"] == "127.0.0.1"
            assert address == f"127.0.0.1:{binding['HostPort']}"
            assert seen[container] == address
        assert case.containers() == []

    @pytest.mark.asyncio
    async def test_a_standby_parks_published_workers(self, case):
        """Test claims from a standby of published workers.

        Given:
            A `Standby` of 2 parked containers with ``publish=True``
        When:
            A pool of 2 claims them and gathers 4 routines
        Then:
            Both should serve at loopback addresses, and the routines run on
            both
        """
        # Arrange
        standby = Standby(
            case.image,
            case.network,
            size=2,
            labels=case.labels,
            name_prefix=case.name_prefix,
            log_output=False,
            publish=True,
        )

        # Act
        async with asyncio.timeout(TIMEOUT), standby:
            await standby.filled()
            pool = wool.WorkerPool(
                spawn=2,
                worker=standby.worker,
                discovery=DockerDiscovery(network=case.network, labels=case.labels),
            )
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(4)))
                published = _ps("--label", case.label)

        # Assert
        assert len({h.split("/")[0] for h in hosts}) == 2
        assert len(published) == 2
        assert all(a.startswith("127.0.0.1:") for a in published.values())

    def test_a_hand_run_container_labelled_publish(self, case, docker, image):
        """Test the ``wool.publish`` label on a container run by hand.

        Given:
            ``docker run -p 127.0.0.1::50051 --label wool.publish=true``
        When:
            ``wool-docker ps`` lists it
        Then:
            It should show the container at ``127.0.0.1`` and the port the
            Engine picked
        """
        # Arrange
        container = docker.run(
            "run", "-d", "--rm", "--label", case.label, "--label", "wool.publish=true",
            "--network", case.network, "-p", "127.0.0.1::50051", image,
        ).stdout.strip()  # fmt: skip
        port = docker.run("port", container, "50051/tcp").stdout.split(":")[-1]
        name = docker.run("inspect", "-f", "{{.Name}}", container).stdout
        try:
            # Act
            seen = _ps("--label", case.label)
        finally:
            docker.remove_containers(container)

        # Assert
        assert seen[name.strip().lstrip("/")] == f"127.0.0.1:{port.strip()}"


@pytest.fixture(scope="module")
def remote(image: str) -> Iterator[Node]:
    """A second Engine this process cannot route to, reached over ``tcp://``
    with mutual TLS."""
    with second_engine(image, tcp=True) as node:
        yield node


@pytest.fixture
def remote_env(remote: Node, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment a user of that Engine has: ``DOCKER_HOST`` and its TLS."""
    assert remote.engine.tcp is not None
    env = {
        "DOCKER_HOST": remote.engine.tcp,
        "DOCKER_TLS_VERIFY": "1",
        "DOCKER_CERT_PATH": str(remote.engine.tls),
    }
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class TestAnEngineTheOwnerCannotRouteTo:
    @pytest.mark.asyncio
    async def test_a_pool_serves_a_burst_on_every_worker(self, case, remote, remote_env):
        """Test a pool on an Engine whose containers this process cannot route to.

        Given:
            A pool of 3 `DockerWorker`s on the second Engine (``DOCKER_HOST``
            its ``tcp://`` address with TLS; its default bridge, whose subnet
            is this machine's own) with default keywords (so the worker feed,
            which shares no file with that Engine, goes through a relay), and
            wool's default quorum
        When:
            6 CPU-bound routines are gathered at pool entry, another process
            lists the workers with ``wool-docker ps``, and 3 routines each
            dispatch 3 nested routines from inside their containers
        Then:
            Every worker should run a routine, each advertised at the second
            Engine's address and a port it published on every address; the
            other process should see the same; the nested routines should
            run on the pool's workers and reach every one; nothing is left
        """
        # Arrange
        options = case.options(network=None)
        pool = wool.WorkerPool(
            spawn=3,
            worker=lambda *tags, **kw: DockerWorker(
                *tags, **options, log_output=False, **kw
            ),
            discovery=DockerDiscovery(labels=case.labels),
        )
        workers: dict[str, str | None] = {}

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(6)))
                seen = _ps("--label", case.label, env=remote_env)
                spread = await asyncio.gather(*(nested.spread(3) for _ in range(3)))
                for name in remote.engine.out(
                    "ps", "-q", "--filter", f"label={case.label}"
                ).split():
                    asked = remote.engine.out(
                        "inspect", "-f", "{{json .HostConfig.PortBindings}}", name
                    )
                    workers[name] = json.loads(asked)["50051/tcp"][0]["HostIp"]
            left = remote.engine.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        containers = {h.split("/")[0] for h in hosts}
        assert len(containers) == 3
        assert {outer for outer, _ in spread} <= containers
        assert set().union(*(set(inner) for _, inner in spread)) == containers
        assert len(workers) == 3
        assert set(workers.values()) == {""}
        assert len(seen) == 3
        assert all(a.startswith(f"{remote.inner}:") for a in seen.values())
        assert left == ""

    @pytest.mark.asyncio
    async def test_a_published_port_this_process_cannot_reach(self, case, remote):
        """Test a worker published where this process cannot connect.

        Given:
            The second Engine through its unix socket (a local socket, but
            the Engine serves from another network namespace, so its workers
            are published, and on that namespace's loopback)
        When:
            A `DockerWorker` with default keywords but ``engine_access="none"``
            is started
        Then:
            It should raise `ContainerFailedError` naming the address it
            cannot reach and what to do, and leave no container
        """
        # Arrange
        worker = DockerWorker(
            **case.options(
                network=None, docker_host=remote.engine.host, engine_access="none"
            )
        )

        # Act
        with pytest.raises(ContainerFailedError) as raised:
            async with asyncio.timeout(TIMEOUT):
                await worker.start()
        left = remote.engine.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        message = str(raised.value)
        assert "cannot reach it at 127.0.0.1:" in message
        assert "publishes its port" in message
        assert left == ""


@pytest.fixture(scope="module")
def remote_registry(
    remote: Node, image: str, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[Registry, str]]:
    """A registry with TLS and htpasswd on this machine's address on the
    second Engine's link (so both Engines verify its certificate: neither
    counts it as a loopback registry), and a reference to the worker image
    pushed there from this machine's Engine; only the registry has that
    reference afterwards."""
    root = tmp_path_factory.mktemp("remote-registry")
    with registry.serve(root, address=remote.address) as served:
        reference = served.reference("wool-docker-reach", uuid4().hex[:12])
        config = served.docker_config("push")
        limit = multinode.CLI_TIMEOUT
        try:
            tag = ["docker", "tag", image, reference]
            subprocess.run(tag, check=True, timeout=limit)
            pushed = subprocess.run(
                ["docker", "--config", str(config), "push", reference],
                capture_output=True,
                text=True,
                timeout=limit,
            )
            assert pushed.returncode == 0, pushed.stderr
            subprocess.run(["docker", "rmi", reference], check=True, timeout=limit)
            yield served, reference
        finally:
            untag = ["docker", "rmi", "-f", reference]
            subprocess.run(untag, timeout=limit, check=False)
            remote.engine.run("rmi", "-f", reference, check=False)


class TestARegistryForAnotherEngine:
    @pytest.mark.asyncio
    async def test_a_pool_pulls_its_image_on_the_other_engine(
        self, case, remote, remote_env, remote_registry, monkeypatch
    ):
        """Test a pool whose image only a registry has, on the second Engine.

        Given:
            The worker image pushed to a registry with TLS (its CA trusted
            through ``/etc/docker/certs.d``) and basic authentication,
            ``DOCKER_CONFIG`` logged in to it as ``docker login`` writes it,
            and a pool of 2 `DockerWorker`s with default keywords and that
            reference on the second Engine (``DOCKER_HOST`` over TLS)
        When:
            4 routines are gathered at pool entry, then a recursive fib
        Then:
            The second Engine should pull the image (the registry logs the
            manifest read), every worker should run a routine, fib should be
            right, and nothing is left after
        """
        # Arrange
        served, reference = remote_registry
        monkeypatch.setenv("DOCKER_CONFIG", str(served.docker_config("login")))
        options = case.options(image=reference, network=None, log_output=False)
        pool = wool.WorkerPool(
            spawn=2,
            worker=lambda *tags, **kw: DockerWorker(*tags, **options, **kw),
            discovery=DockerDiscovery(labels=case.labels),
        )
        repository, _, tag = reference.partition("/")[2].partition(":")

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                hosts = await asyncio.gather(*(routines.burn(0.1) for _ in range(4)))
                result = await nested.fib(7)
        left = remote.engine.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        # The Engine asks for the tag's manifest, then fetches it by digest.
        assert served.requests(f"HEAD /v2/{repository}/manifests/{tag}") >= 1
        assert remote.engine.out("image", "inspect", "-f", "{{.Id}}", reference)
        assert len({h.split("/")[0] for h in hosts}) == 2
        assert result == 13
        assert left == ""

    @pytest.mark.asyncio
    async def test_wrong_credentials_for_the_other_engine(
        self, case, remote, remote_env, remote_registry, monkeypatch
    ):
        """Test a worker start on the second Engine with a wrong password.

        Given:
            ``DOCKER_CONFIG`` naming the registry with a wrong password, and a
            `DockerWorker` of a reference only that registry has, on the
            second Engine
        When:
            It is started
        Then:
            It should raise `RegistryAuthError` naming the registry, and
            leave no container there
        """
        # Arrange
        served, reference = remote_registry
        remote.engine.run("rmi", "-f", reference, check=False)
        config = served.docker_config("wrong", password="not-the-password")
        monkeypatch.setenv("DOCKER_CONFIG", str(config))
        worker = DockerWorker(**case.options(image=reference, network=None))

        # Act
        with pytest.raises(RegistryAuthError) as raised:
            async with asyncio.timeout(TIMEOUT):
                await worker.start()
        left = remote.engine.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        assert served.host in str(raised.value)
        assert left == ""


@pytest.fixture(scope="module")
def over_ssh(image: str) -> Iterator[Node]:
    """A second Engine this process cannot route to, reached over ``ssh://``."""
    with second_engine(image, ssh=True) as node:
        yield node


@pytest.fixture
def ssh_env(over_ssh: Node, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of a user of that Engine: ``DOCKER_HOST=ssh://…`` and
    the ssh options naming its key and known host."""
    assert over_ssh.ssh is not None
    env = {"DOCKER_HOST": over_ssh.ssh, "WOOL_DOCKER_SSH_OPTS": over_ssh.ssh_options}
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


class TestAnEngineOverSsh:
    @pytest.mark.asyncio
    async def test_a_pool_and_a_standby_serve_over_ssh(self, case, over_ssh, ssh_env):
        """Test pools on an ``ssh://`` Engine this process cannot route to.

        Given:
            ``DOCKER_HOST=ssh://root@HOST`` (an sshd on the second Engine's
            host, key authentication), `DockerWorker`s with default keywords,
            and a `Standby` of 2 (the worker feed through a relay in each)
        When:
            A pool of 3 gathers 6 CPU-bound routines at entry; then a pool of
            2 claims the standby, gathers 4, and runs a recursive fib;
            another process lists the workers with ``wool-docker ps``
        Then:
            Every worker of each pool should run a routine, each advertised at
            the ssh host and a published port, as the other process sees it;
            fib should be right; nothing is left on that Engine after
        """
        # Arrange
        options = case.options(network=None, log_output=False)
        pool = wool.WorkerPool(
            spawn=3,
            worker=lambda *tags, **kw: DockerWorker(*tags, **options, **kw),
            discovery=DockerDiscovery(labels=case.labels),
        )
        standby = Standby(
            case.image,
            None,
            size=2,
            labels=case.labels,
            name_prefix=case.name_prefix,
            log_output=False,
        )
        inner = over_ssh.inner

        # Act
        async with asyncio.timeout(TIMEOUT):
            async with pool:
                first = await asyncio.gather(*(routines.burn(0.1) for _ in range(6)))
                seen = _ps("--label", case.label, env=ssh_env)
            async with standby:
                await standby.filled()
                claimed = wool.WorkerPool(
                    spawn=2,
                    worker=standby.worker,
                    discovery=DockerDiscovery(labels=case.labels),
                )
                async with claimed:
                    second = await asyncio.gather(
                        *(routines.burn(0.1) for _ in range(4))
                    )
                    result = await nested.fib(7)
        left = over_ssh.engine.out("ps", "-aq", "--filter", f"label={case.label}")

        # Assert
        assert len({h.split("/")[0] for h in first}) == 3
        assert len({h.split("/")[0] for h in second}) == 2
        assert result == 13
        assert len(seen) == 3
        assert all(a.startswith(f"{inner}:") for a in seen.values())
        assert left == ""

    def test_an_owner_killed_leaves_nothing_on_the_remote_engine(
        self, case, over_ssh, ssh_env
    ):
        """Test an owner on an ``ssh://`` Engine killed with ``SIGKILL``.

        Given:
            An owner process that started 2 workers over ssh with default
            keywords (each with the worker feed's relay)
        When:
            It is killed with ``SIGKILL``
        Then:
            Its containers on the remote Engine should be gone, and so should
            its ssh process, both within the deadline
        """
        # Arrange
        script = (
            "import asyncio, json, sys\n"
            "from wool_docker import DockerWorker\n"
            "async def main():\n"
            "    workers = [DockerWorker(**json.loads(sys.argv[1])) for _ in range(2)]\n"
            "    await asyncio.gather(*(w.start() for w in workers))\n"
            "    print('up', flush=True)\n"
            "    await asyncio.Event().wait()\n"
            "asyncio.run(main())\n"
        )
        options = case.options(network=None)
        owner = subprocess.Popen(
            [sys.executable, "-c", script, json.dumps(options)],
            stdout=subprocess.PIPE,
            env={**os.environ, **ssh_env},
        )
        assert owner.stdout is not None
        try:
            assert owner.stdout.readline().strip() == b"up"
            running = over_ssh.engine.out("ps", "-q", "--filter", f"label={case.label}")
            tunnels = _children(owner.pid, "ssh")

            # Act
            owner.kill()
            owner.wait(TIMEOUT)

            # Assert
            multinode.wait_for(
                lambda: (
                    True
                    if not over_ssh.engine.out(
                        "ps", "-aq", "--filter", f"label={case.label}"
                    )
                    else None
                ),
                timeout=TIMEOUT,
                what="the killed owner's containers to go",
            )
            multinode.wait_for(
                lambda: True if not any(_alive(pid) for pid in tunnels) else None,
                timeout=TIMEOUT,
                what="the killed owner's ssh to exit",
            )
        finally:
            if owner.poll() is None:
                owner.kill()
                owner.wait(TIMEOUT)
            for name in over_ssh.engine.out(
                "ps", "-aq", "--filter", f"label={case.label}"
            ).split():
                over_ssh.engine.run("rm", "-f", name, check=False)
        assert len(running.split()) == 2
        assert len(tunnels) == 1

    @pytest.mark.asyncio
    async def test_build_and_prune_over_ssh(self, case, over_ssh, ssh_env):
        """Test an image build and ``wool-docker prune`` over ssh.

        Given:
            ``DOCKER_HOST=ssh://root@HOST``; a build context of the worker
            image plus a label, and a managed container on that Engine whose
            owner process is gone
        When:
            The image is built through wool-docker, and ``wool-docker prune``
            runs in another process scoped to the test's label
        Then:
            The image should be on the remote Engine with its label; the
            orphan should be removed
        """
        # Arrange
        tag = f"wool-docker-reach-test:{case.id}"
        dockerfile = f"FROM {case.image}\nLABEL wool.test.built=over-ssh\n".encode()
        context = io.BytesIO()
        with tarfile.open(fileobj=context, mode="w") as tar:
            info = tarfile.TarInfo("Dockerfile")
            info.size = len(dockerfile)
            tar.addfile(info, io.BytesIO(dockerfile))
        uid, host, pid, _ = _native.owner_token().split("/")
        dead = f"{uid}/{host}/{pid}/1"
        orphan = over_ssh.engine.out(
            "create", "--label", case.label, "--label", "wool.docker.managed=true",
            "--label", f"wool.docker.owner={dead}", case.image,
        )  # fmt: skip

        # Act
        try:
            async with asyncio.timeout(TIMEOUT):
                await _native.build_image(context.getvalue(), tag)
            label = over_ssh.engine.out(
                "image", "inspect", "-f", '{{index .Config.Labels "wool.test.built"}}',
                tag,
            )  # fmt: skip
            pruned = subprocess.run(
                [
                    sys.executable,
                    "-m",
                    "wool_docker.cli",
                    "prune",
                    "--label",
                    case.label,
                ],
                capture_output=True,
                text=True,
                env={**os.environ, **ssh_env},
                timeout=TIMEOUT,
                check=False,
            )
            left = over_ssh.engine.out("ps", "-aq", "--filter", f"label={case.label}")
        finally:
            over_ssh.engine.run("rm", "-f", orphan, check=False)
            over_ssh.engine.run("image", "rm", "-f", tag, check=False)

        # Assert
        assert label == "over-ssh"
        assert pruned.returncode == 0, pruned.stderr
        assert left == ""

    @pytest.mark.asyncio
    @pytest.mark.parametrize("broken", ["host key", "key"])
    async def test_ssh_failures_name_the_cause(self, case, over_ssh, tmp_path, broken):
        """Test an ``ssh://`` Engine whose host key is unknown, or which
        refuses the key offered.

        Given:
            ssh options with an empty known_hosts, or with a key the host
            does not accept
        When:
            A worker is started over ssh
        Then:
            It should raise `EngineUnavailableError` naming known_hosts, or
            the refused authentication, and create nothing
        """
        # Arrange
        assert over_ssh.ssh is not None
        config = over_ssh.engine.root / "ssh" / "config"
        text = config.read_text()
        if broken == "host key":
            (tmp_path / "known_hosts").write_text("")
            text = text.replace(
                str(over_ssh.engine.root / "ssh" / "known_hosts"),
                str(tmp_path / "known_hosts"),
            )
            expected = "known_hosts"
        else:
            subprocess.run(
                ["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f",
                 str(tmp_path / "stranger")],
                check=True,
            )  # fmt: skip
            text = text.replace(
                str(over_ssh.engine.root / "ssh" / "id"), str(tmp_path / "stranger")
            )
            expected = "authentication as root@"
        (tmp_path / "config").write_text(text)
        # Spelled with its port: this process keeps the Engine of an address
        # it reached (`ssh://root@HOST`) and would not open ssh again.
        host = f"ssh://root@{over_ssh.inner}:22"
        worker = DockerWorker(**case.options(network=None, engine_access="none"))

        # Act
        with pytest.MonkeyPatch.context() as patch:
            patch.setenv("WOOL_DOCKER_SSH_OPTS", f"-F {tmp_path / 'config'}")
            patch.setenv("DOCKER_HOST", host)
            with pytest.raises(EngineUnavailableError) as raised:
                await worker.start()

        # Assert
        assert expected in str(raised.value)
        assert over_ssh.engine.out("ps", "-aq", "--filter", f"label={case.label}") == ""


def _children(pid: int, name: str) -> list[int]:
    """The pids of ``pid``'s children named ``name``."""
    out = subprocess.run(
        ["ps", "-o", "pid=,comm=", "--ppid", str(pid)],
        capture_output=True,
        text=True,
        check=False,
    ).stdout
    return [
        int(p) for p, comm in (line.split() for line in out.splitlines()) if comm == name
    ]


def _alive(pid: int) -> bool:
    """Whether process ``pid`` runs (a zombie does not)."""
    try:
        with open(f"/proc/{pid}/stat") as stat:
            return stat.read().rsplit(")", 1)[1].split()[0] != "Z"
    except OSError:
        return False
