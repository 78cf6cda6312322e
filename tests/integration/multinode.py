"""A real two-node Docker Swarm on this one machine, for the multi-node tests.

`two_node_swarm` builds it and takes it down again:

- a network namespace with a veth pair, ``10.231.K.1/24`` on the machine's side
  and ``10.231.K.2/24`` inside (K is chosen so that no address or route of the
  machine is in that /24);
- a second Docker Engine in that namespace (``nsenter --net``; ``ip netns exec``
  remounts ``/sys`` and dockerd then finds no cgroups), with its own config
  file, data root (fuse-overlayfs, else ``vfs``), exec root and socket, all in
  one temporary directory; the worker image is loaded into it with ``docker
  save | docker load`` (there is no registry);
- the machine's Engine as the swarm's only manager, advertising ``10.231.K.1``,
  and the second Engine joined as a worker;
- an attachable overlay network spanning both.

It needs root, and the machine's Engine in no swarm: a swarm that is already
active is not this module's, so it refuses rather than join it or leave it.
On exit, whatever happened, it removes every service, leaves the swarm on
both Engines (the machine's is ``inactive`` again), stops the second Engine
(SIGKILL after a deadline), deletes the namespace, the veth pair and the
temporary directory, and removes ``docker_gwbridge`` and ``ingress`` if they
were not there before. The machine's own daemon is never stopped or restarted.

Everything carries the prefix `PREFIX` and the run's id: the namespace
(``wdmn-ID``), the veth pair (``wdmnIDh``, ``wdmnIDn``), the temporary directory
(``wdmn-ID-*``, with a ``state.json`` naming its owner process and what it
created). At start, what a run whose owner process is gone left behind (a
crashed or killed session) is removed first, the machine's swarm included if
that run had created it and it still advertises that run's address.

In pytest, the ``two_nodes`` fixture of ``conftest.py`` (module scope) wraps
it. Module scope matters: the single-node ``swarm`` fixture of `test_modes`
initialises its own swarm (``--advertise-addr 127.0.0.1``) for its module, so
the two cannot coexist; each leaves its swarm when its module ends, and they
run one after the other in one session. A module must not use both.

`second_engine` alone is the Engine an owner cannot route to (`test_reach`).

Outside pytest (a benchmark), use the context manager directly::

    with two_node_swarm("wool-docker-worker:dev") as swarm:
        service = swarm.create_service(4, "--replicas-max-per-node", "3")
        tasks = swarm.manager.tasks(service=service)
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import os
import random
import shutil
import signal
import socket
import subprocess
import tempfile
import time
import urllib.parse
from collections.abc import Callable
from collections.abc import Iterator
from dataclasses import dataclass
from dataclasses import field
from pathlib import Path
from typing import Any
from typing import Final
from typing import TypeVar
from uuid import uuid4

PREFIX: Final[str] = "wdmn"
"""Prefix of every namespace, link and temporary directory this module makes."""

SUBNET: Final[str] = "10.231"
"""The first two octets of the /24 the namespace's veth pair gets."""

MANAGER_HOST: Final[str] = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
"""The machine's Engine, the swarm's manager."""

CLI_TIMEOUT: Final[float] = 120.0
"""Seconds one docker CLI call may take."""

START_TIMEOUT: Final[float] = 60.0
"""Seconds the second Engine may take to answer after it is started."""

STOP_TIMEOUT: Final[float] = 30.0
"""Seconds the second Engine may take to exit after SIGTERM before SIGKILL."""

READY_TIMEOUT: Final[float] = 60.0
"""Seconds a joined or restarted node may take to be ``ready`` in the swarm."""

POLL: Final[float] = 0.1
"""Seconds between two looks at something a wait polls."""

_log = logging.getLogger(__name__)

T = TypeVar("T")


class MultiNodeError(RuntimeError):
    """The two-node swarm could not be built, used or taken down."""


def wait_for(
    probe: Callable[[], T | None], *, timeout: float, what: str, interval: float = POLL
) -> T:
    """Poll ``probe`` until it returns something other than None.

    :param probe:
        Looks at the thing waited for; None means not yet.
    :param timeout:
        Seconds to wait.
    :param what:
        What is waited for, for the error.
    :param interval:
        Seconds between two probes.
    :returns:
        What ``probe`` returned.
    :raises MultiNodeError:
        If the deadline passes first.
    """
    deadline = time.monotonic() + timeout
    while True:
        value = probe()
        if value is not None:
            return value
        if time.monotonic() >= deadline:
            raise MultiNodeError(f"timed out after {timeout:.0f} s waiting for {what}")
        time.sleep(interval)


def _command(*args: str, check: bool = True, **kwargs: Any) -> str:
    """Run a command; its standard output. Fails loudly if ``check``."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=CLI_TIMEOUT, check=False, **kwargs
    )
    if check and result.returncode != 0:
        raise MultiNodeError(
            f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


class UnixConnection(http.client.HTTPConnection):
    """HTTP over the Engine's unix socket."""

    def __init__(self, path: str, timeout: float):
        super().__init__("localhost", timeout=timeout)
        self._path = path

    def connect(self) -> None:
        self.sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self.sock.settimeout(self.timeout)
        self.sock.connect(self._path)


@dataclass
class Engine:
    """One Docker Engine of the swarm, by its ``unix://`` host URL."""

    host: str
    node_id: str = ""

    @property
    def socket(self) -> str:
        """The path of the Engine's unix socket."""
        if not self.host.startswith("unix://"):
            raise MultiNodeError(f"{self.host} is not a unix socket")
        return self.host.removeprefix("unix://")

    def run(self, *args: str, check: bool = True) -> subprocess.CompletedProcess[str]:
        """``docker -H HOST ARGS``; raises `MultiNodeError` if it fails and ``check``.

        :returns:
            The finished process, with text output.
        """
        result = subprocess.run(
            ["docker", "-H", self.host, *args],
            capture_output=True,
            text=True,
            timeout=CLI_TIMEOUT,
            check=False,
        )
        if check and result.returncode != 0:
            raise MultiNodeError(
                f"docker -H {self.host} {' '.join(args)} exited {result.returncode}: "
                f"{result.stderr.strip()}"
            )
        return result

    def out(self, *args: str) -> str:
        """Standard output of ``docker -H HOST ARGS``, stripped."""
        return self.run(*args).stdout.strip()

    def request(
        self, method: str, path: str, *, timeout: float = CLI_TIMEOUT
    ) -> tuple[int, bytes]:
        """One request to the Engine's API; its status and body.

        :param path:
            The path with its query, e.g. ``/tasks``.
        """
        connection = UnixConnection(self.socket, timeout)
        try:
            connection.request(method, path)
            response = connection.getresponse()
            return response.status, response.read()
        finally:
            connection.close()

    def get(self, path: str) -> Any:
        """``GET path`` as JSON; raises `MultiNodeError` on an error status."""
        status, body = self.request("GET", path)
        if status >= 400:
            raise MultiNodeError(f"GET {path}: {status} {body.decode().strip()}")
        return json.loads(body)

    def tasks(self, **filters: str | list[str]) -> list[dict[str, Any]]:
        """``GET /tasks`` with ``filters`` (e.g. ``service=NAME``)."""
        query = {
            k.replace("_", "-"): v if isinstance(v, list) else [v]
            for k, v in filters.items()
        }
        return self.get("/tasks?filters=" + urllib.parse.quote(json.dumps(query)))

    def swarm_state(self) -> str:
        """``Swarm.LocalNodeState``: ``inactive``, ``active``, ``pending``..."""
        return self.out("info", "--format", "{{.Swarm.LocalNodeState}}")

    def answers(self) -> bool:
        """Whether the Engine answers ``docker version`` now."""
        result = subprocess.run(
            ["docker", "-H", self.host, "version", "--format", "{{.Server.Version}}"],
            capture_output=True,
            text=True,
            timeout=10,
            check=False,
        )
        return result.returncode == 0


@dataclass
class SecondEngine(Engine):
    """The Engine this module runs in its network namespace; stop and start it.

    Its containers die with it (no live-restore); when it starts again it
    rejoins the swarm on its own (the swarm state is in its data root).
    """

    root: Path = Path()
    netns: str = ""
    tcp: str | None = None
    """Where it also serves its API over TCP with mutual TLS, if it does (its
    client's ``DOCKER_CERT_PATH`` is `tls`)."""
    process: subprocess.Popen[bytes] | None = None

    @property
    def command(self) -> list[str]:
        """The dockerd command line, the same for every start."""
        return [
            "nsenter",
            f"--net=/var/run/netns/{self.netns}",
            "dockerd",
            "--config-file",
            str(self.root / "daemon.json"),
            "--exec-root",
            str(self.root / "exec"),
            "-H",
            self.host,
            *(self._tcp_options() if self.tcp else []),
            "--pidfile",
            str(self.root / "dockerd.pid"),
        ]

    @property
    def tls(self) -> Path:
        """The client's TLS material (``ca.pem``, ``cert.pem``, ``key.pem``)."""
        return self.root / "tls"

    def _tcp_options(self) -> list[str]:
        tls = self.tls
        return [
            "-H",
            str(self.tcp),
            "--tlsverify",
            f"--tlscacert={tls / 'ca.pem'}",
            f"--tlscert={tls / 'server-cert.pem'}",
            f"--tlskey={tls / 'server-key.pem'}",
        ]

    @property
    def log(self) -> Path:
        """Where dockerd's output goes (appended to on every start)."""
        return self.root / "dockerd.log"

    def log_tail(self, lines: int = 15) -> str:
        """The last lines dockerd printed, for an error message."""
        with contextlib.suppress(OSError):
            return "\n".join(self.log.read_text(errors="replace").splitlines()[-lines:])
        return ""

    @property
    def running(self) -> bool:
        """Whether the dockerd this object started is still running."""
        return self.process is not None and self.process.poll() is None

    def start(self) -> float:
        """Start dockerd and wait until it answers; seconds that took."""
        if self.running:
            raise MultiNodeError("the second Engine is already running")
        begin = time.monotonic()
        with self.log.open("ab") as log:
            self.process = subprocess.Popen(
                self.command,
                stdin=subprocess.DEVNULL,
                stdout=log,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )
        _write_state(self.root, dockerd=self.process.pid)

        def answered() -> bool | None:
            if not self.running:
                raise MultiNodeError(
                    f"the second Engine exited at start:\n{self.log_tail()}"
                )
            return True if self.answers() else None

        wait_for(answered, timeout=START_TIMEOUT, what="the second Engine to answer")
        return time.monotonic() - begin

    def stop(self, timeout: float = STOP_TIMEOUT) -> float:
        """SIGTERM dockerd and wait for it to exit, SIGKILL after ``timeout``.

        :returns:
            Seconds until it exited.
        """
        begin = time.monotonic()
        if self.process is None:
            return 0.0
        if self.process.poll() is None:
            self.process.send_signal(signal.SIGTERM)
            try:
                self.process.wait(timeout)
            except subprocess.TimeoutExpired:
                _log.warning("second Engine ignored SIGTERM for %s s; killing", timeout)
                self.process.kill()
                self.process.wait(timeout)
        self.process = None
        return time.monotonic() - begin

    def restart(self) -> float:
        """`stop`, then `start`; seconds the whole took."""
        begin = time.monotonic()
        self.stop()
        self.start()
        return time.monotonic() - begin


@dataclass
class Swarm:
    """A two-node swarm: the machine's Engine (manager) and a second (worker)."""

    manager: Engine
    worker: SecondEngine
    address: str
    """The manager's advertise address, ``10.231.K.1``."""
    overlay: str
    """An attachable overlay network spanning both nodes."""
    name_prefix: str
    labels: dict[str, str]
    """Labels every service and task container `create_service` makes carries."""
    image: str
    services: list[str] = field(default_factory=list)
    timings: dict[str, float] = field(default_factory=dict)
    """Seconds each phase of setup and teardown took (``setup``, ``teardown``...)."""
    _names: Iterator[int] = field(default_factory=lambda: iter(range(1 << 30)))

    def name(self, kind: str) -> str:
        """A unique name of this run for a service or network."""
        return f"{self.name_prefix}-mn{kind}{next(self._names)}"

    def create_service(self, replicas: int, *args: str, name: str | None = None) -> str:
        """A replicated service of the image on the overlay; its name.

        Its task containers carry ``wool.worker=true`` and `labels`; the
        service is removed on exit if the test does not remove it.

        :param replicas:
            How many tasks.
        :param args:
            Further ``docker service create`` options, e.g.
            ``--replicas-max-per-node 3``.
        """
        name = name or self.name("service")
        labels: list[str] = []
        for key, value in self.labels.items():
            labels += [
                "--label",
                f"{key}={value}",
                "--container-label",
                f"{key}={value}",
            ]
        self.services.append(name)
        self.manager.run(
            "service",
            "create",
            "--detach",
            "--name",
            name,
            "--replicas",
            str(replicas),
            "--network",
            self.overlay,
            "--container-label",
            "wool.worker=true",
            *labels,
            # The image is local only: there is no registry to resolve it in.
            "--no-resolve-image",
            *args,
            self.image,
        )
        return name

    def remove_service(self, name: str, timeout: float = 60.0) -> None:
        """Remove a service and wait until its containers are gone on both nodes."""
        self.manager.run("service", "rm", name, check=False)
        label = f"label=com.docker.swarm.service.name={name}"

        def gone() -> bool | None:
            for engine in (self.manager, self.worker):
                if engine is self.worker and not self.worker.running:
                    continue
                if engine.out("ps", "-a", "-q", "--filter", label):
                    return None
            return True

        wait_for(gone, timeout=timeout, what=f"the containers of service {name} to go")

    def nodes(self) -> dict[str, dict[str, Any]]:
        """The manager's ``GET /nodes``, by node id."""
        return {node["ID"]: node for node in self.manager.get("/nodes")}

    def wait_ready(self, timeout: float = READY_TIMEOUT) -> float:
        """Wait until both nodes are ``ready``; seconds that took."""
        begin = time.monotonic()

        def ready() -> bool | None:
            nodes = self.nodes()
            states = [n["Status"]["State"] for n in nodes.values()]
            return True if len(nodes) == 2 and states == ["ready"] * 2 else None

        wait_for(ready, timeout=timeout, what="both swarm nodes to be ready")
        return time.monotonic() - begin


# State files and what a dead run left behind.


def _start_time(pid: int) -> str | None:
    """The start time of process ``pid`` (clock ticks since boot), None if none."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return None
    return stat.rsplit(")", 1)[1].split()[19]


def _write_state(root: Path, **values: Any) -> None:
    """Merge ``values`` into ``root/state.json``."""
    path = root / "state.json"
    state = json.loads(path.read_text()) if path.exists() else {}
    state.update(values)
    temporary = path.with_suffix(".tmp")
    temporary.write_text(json.dumps(state))
    temporary.replace(path)


def _read_state(root: Path) -> dict[str, Any]:
    with contextlib.suppress(OSError, ValueError):
        return json.loads((root / "state.json").read_text())
    return {}


def _alive(state: dict[str, Any]) -> bool:
    """Whether the process that wrote ``state`` still runs."""
    owner = state.get("owner")
    return owner is not None and _start_time(owner) == state.get("owner_start")


def _roots() -> list[Path]:
    return sorted(Path(tempfile.gettempdir()).glob(f"{PREFIX}-*"))


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever a killed dockerd left mounted under ``root``."""
    mounts = []
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        point = line.split()[4].replace("\\040", " ")
        if point == str(root) or point.startswith(f"{root}/"):
            mounts.append(point)
    for point in sorted(mounts, key=len, reverse=True):
        _command("umount", "-l", point, check=False)


def _netns() -> list[str]:
    return [line.split()[0] for line in _command("ip", "netns", "list").splitlines()]


def _links() -> list[str]:
    return [
        line.split()[1].split("@")[0].rstrip(":")
        for line in _command("ip", "-o", "link", "show").splitlines()
    ]


def _dockerd_pids(root: Path) -> list[int]:
    """Processes whose command line names ``root`` as exec root (dockerd)."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            argv = (entry / "cmdline").read_bytes().split(b"\0")
        except OSError:
            continue
        if str(root / "exec").encode() in argv and b"dockerd" in b" ".join(argv):
            pids.append(int(entry.name))
    return pids


def clean_leftovers(manager: Engine | None = None) -> list[str]:
    """Remove what runs whose owner process is gone left behind.

    A run's namespace, links, dockerd, temporary directory, and the machine's
    swarm if that run had initialised it and it still advertises the run's
    address. Runs whose owner is alive (another session) are left alone.

    :returns:
        What was removed, for the log.
    """
    manager = manager or Engine(MANAGER_HOST)
    removed: list[str] = []
    live: set[str] = set()
    for root in _roots():
        state = _read_state(root)
        run = state.get("run") or root.name.split("-")[1]
        if _alive(state):
            live.add(run)
            continue
        for pid in _dockerd_pids(root):
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)
            removed.append(f"dockerd {pid}")
        if state.get("swarm_init") and manager.swarm_state() == "active":
            address = manager.out("info", "--format", "{{.Swarm.NodeAddr}}")
            if address == state.get("address"):
                manager.run("swarm", "leave", "--force", check=False)
                removed.append(f"the machine's swarm at {address}")
                for network in state.get("networks_to_remove", []):
                    manager.run("network", "rm", network, check=False)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(str(root))
    for name in _netns():
        if name.startswith(f"{PREFIX}-") and name.split("-")[1] not in live:
            _command("ip", "netns", "del", name, check=False)
            removed.append(f"netns {name}")
    for name in _links():
        run = name[len(PREFIX) : -1]
        if name.startswith(PREFIX) and len(run) == 8 and run not in live:
            _command("ip", "link", "del", name, check=False)
            removed.append(f"link {name}")
    return removed


def _make_tls(directory: Path, address: str) -> None:
    """A CA, a server certificate for ``address`` and a client certificate,
    the files the docker CLI and dockerd expect (P-256 keys: quick to make)."""
    directory.mkdir(mode=0o700)
    key = ["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]
    days = ["-days", "2"]

    def openssl(*args: str) -> None:
        result = subprocess.run(
            ["openssl", *args], cwd=directory, capture_output=True, text=True
        )
        if result.returncode != 0:
            raise MultiNodeError(f"openssl {args[0]}: {result.stderr.strip()}")

    openssl("req", "-x509", *key, *days, "-keyout", "ca-key.pem", "-out", "ca.pem",
            "-subj", "/CN=wdmn test CA")  # fmt: skip
    for name, extensions in (
        ("server", f"extendedKeyUsage=serverAuth\nsubjectAltName=IP:{address}\n"),
        ("client", "extendedKeyUsage=clientAuth\n"),
    ):
        openssl("req", *key, "-keyout", f"{name}-key.pem", "-out", f"{name}.csr",
                "-subj", f"/CN={name}")  # fmt: skip
        (directory / f"{name}.ext").write_text(extensions)
        openssl("x509", "-req", "-in", f"{name}.csr", "-CA", "ca.pem", "-CAkey",
                "ca-key.pem", "-CAcreateserial", *days, "-out", f"{name}-cert.pem",
                "-extfile", f"{name}.ext")  # fmt: skip
    (directory / "client-cert.pem").rename(directory / "cert.pem")
    (directory / "client-key.pem").rename(directory / "key.pem")


def _free_subnet() -> int:
    """A K such that nothing of the machine is in ``10.231.K.0/24``."""
    used = _command("ip", "-o", "-4", "addr", "show") + _command("ip", "-4", "route")
    taken = {_read_state(root).get("k") for root in _roots()}
    candidates = list(range(1, 255))
    random.shuffle(candidates)
    for k in candidates:
        if k not in taken and f"{SUBNET}.{k}." not in used:
            return k
    raise MultiNodeError(f"no free /24 in {SUBNET}.0.0/16")


def _storage() -> str:
    """The second Engine's storage driver: fuse-overlayfs where it is installed
    (the machine's own Engine uses it), else vfs. With vfs every task copies the
    whole image: tasks spent 15-22 s preparing, against under 2 s."""
    return "fuse-overlayfs" if shutil.which("fuse-overlayfs") else "vfs"


def _networks(engine: Engine) -> set[str]:
    return set(engine.out("network", "ls", "--format", "{{.Name}}").split())


@dataclass
class Node:
    """A second Engine in a network namespace of its own, and its addresses."""

    engine: SecondEngine
    run: str
    """The run's id, in every name it made."""
    address: str
    """The machine's side of the veth pair, ``10.231.K.1``."""
    inner: str
    """The namespace's side, ``10.231.K.2``: where the machine reaches it."""
    timings: dict[str, float] = field(default_factory=dict)
    ssh: str | None = None
    """``ssh://root@INNER``, where an sshd in the namespace leads to this
    Engine's socket as the host's ``/var/run/docker.sock``, if it was asked for."""
    ssh_options: str = ""
    """The ssh options (``-F CONFIG``) that reach it: its key, its host key."""


def start_sshd(
    directory: Path, address: str, socket_path: Path, netns: str | None = None
) -> tuple[subprocess.Popen[bytes], str]:
    """An sshd listening at ``address:22`` (in network namespace ``netns``, or
    this one) whose ``/var/run/docker.sock`` is ``socket_path``: it runs in a
    mount namespace of its own with a tmpfs ``/run``, so nothing of the
    machine's changes. Key authentication only, with keys, host key and
    configuration made in ``directory``. Returns the process (stop it, and
    kill what runs in its session) and the client's ssh options (``-F``)."""
    keys = directory
    keys.mkdir(mode=0o700)
    for name in ("host_key", "id"):
        _command("ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(keys / name))
    (keys / "authorized_keys").write_text((keys / "id.pub").read_text())
    host_key = (keys / "host_key.pub").read_text().split()
    (keys / "known_hosts").write_text(f"{address} {host_key[0]} {host_key[1]}\n")
    (keys / "sshd_config").write_text(
        f"ListenAddress {address}:22\nHostKey {keys / 'host_key'}\n"
        f"AuthorizedKeysFile {keys / 'authorized_keys'}\nPidFile {keys / 'sshd.pid'}\n"
        "PermitRootLogin prohibit-password\nPasswordAuthentication no\n"
        "KbdInteractiveAuthentication no\nUsePAM no\nStrictModes no\n"
        "AllowStreamLocalForwarding yes\n"
    )
    (keys / "config").write_text(
        f"Host {address}\n  User root\n  IdentityFile {keys / 'id'}\n"
        f"  IdentitiesOnly yes\n  UserKnownHostsFile {keys / 'known_hosts'}\n"
    )
    exposed = keys / "engine.sock"
    script = (
        f"touch {exposed} && mount --bind {socket_path} {exposed} && "
        "mount -t tmpfs -o mode=755 tmpfs /run && mkdir /run/sshd && "
        f"touch /run/docker.sock && mount --bind {exposed} /run/docker.sock && "
        f"exec /usr/sbin/sshd -D -e -f {keys / 'sshd_config'}"
    )
    enter = [] if netns is None else ["nsenter", f"--net=/var/run/netns/{netns}"]
    with (keys / "sshd.log").open("ab") as log:
        sshd = subprocess.Popen(
            [*enter, "unshare", "--mount", "--propagation", "private", "sh", "-c",
             script],
            stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
            start_new_session=True,
        )  # fmt: skip

    def listening() -> bool | None:
        if sshd.poll() is not None:
            log = (keys / "sshd.log").read_text(errors="replace")
            raise MultiNodeError(f"sshd exited at start:\n{log}")
        with contextlib.suppress(OSError), socket.create_connection((address, 22), 1):
            return True
        return None

    wait_for(listening, timeout=START_TIMEOUT, what="sshd to listen")
    return sshd, f"-F {keys / 'config'}"


def stop_sshd(sshd: subprocess.Popen[bytes]) -> None:
    """Stop an sshd of `start_sshd` and the sessions it started."""
    with contextlib.suppress(ProcessLookupError):
        os.killpg(sshd.pid, signal.SIGTERM)
    try:
        sshd.wait(STOP_TIMEOUT)
    except subprocess.TimeoutExpired:
        sshd.kill()
        sshd.wait(STOP_TIMEOUT)


@contextlib.contextmanager
def second_engine(image: str, *, tcp: bool = False, ssh: bool = False) -> Iterator[Node]:
    """A second Engine in its own network namespace, with ``image`` loaded.

    Its bridges are its namespace's: this machine's processes cannot route to
    its containers' addresses (its default subnet is the machine's own), as
    with Docker Desktop, rootless Docker or a remote host. Ports it publishes
    are reached at `Node.inner`. On exit, whatever happened, the Engine is
    stopped and the namespace, veth pair and temporary directory removed.

    :param tcp:
        Also serve the Engine's API, with mutual TLS, at ``tcp://INNER:2376``
        (`SecondEngine.tcp`), the address other namespaces reach it at; its
        clients' certificates are in `SecondEngine.tls`.
    :param ssh:
        Also run an sshd in its namespace that leads to it (`Node.ssh`).
    :raises MultiNodeError:
        If anything of the build fails, or the teardown could not remove
        something.
    """
    run = uuid4().hex[:8]
    for what in clean_leftovers():
        _log.warning("removed a leftover of a previous multi-node run: %s", what)
    begin = time.monotonic()
    timings: dict[str, float] = {}
    root = Path(tempfile.mkdtemp(prefix=f"{PREFIX}-{run}-"))
    me = os.getpid()
    _write_state(root, run=run, owner=me, owner_start=_start_time(me))
    netns, host_link, ns_link = f"{PREFIX}-{run}", f"{PREFIX}{run}h", f"{PREFIX}{run}n"
    engine = SecondEngine(host=f"unix://{root}/docker.sock", root=root, netns=netns)
    sshd: subprocess.Popen[bytes] | None = None
    try:
        k = _free_subnet()
        address, inner = f"{SUBNET}.{k}.1", f"{SUBNET}.{k}.2"
        _write_state(root, k=k, address=address, netns=netns, links=[host_link])
        _command("ip", "netns", "add", netns)
        _command("ip", "link", "add", host_link, "type", "veth", "peer", "name", ns_link)
        _command("ip", "link", "set", ns_link, "netns", netns)
        _command("ip", "addr", "add", f"{address}/24", "dev", host_link)
        _command("ip", "link", "set", host_link, "up")
        inside = ("ip", "netns", "exec", netns, "ip")
        _command(*inside, "addr", "add", f"{inner}/24", "dev", ns_link)
        _command(*inside, "link", "set", ns_link, "up")
        _command(*inside, "link", "set", "lo", "up")
        timings["namespace"] = time.monotonic() - begin
        if tcp:
            _make_tls(engine.tls, inner)
            engine.tcp = f"tcp://{inner}:2376"

        config = {
            "data-root": str(root / "data"),
            "storage-driver": _storage(),
            "mtu": 1400,
        }
        (root / "daemon.json").write_text(json.dumps(config))
        timings["dockerd_start"] = engine.start()

        mark = time.monotonic()
        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        assert save.stdout is not None
        try:
            load = subprocess.run(
                ["docker", "-H", engine.host, "load", "--quiet"],
                stdin=save.stdout,
                capture_output=True,
                text=True,
                timeout=CLI_TIMEOUT,
                check=False,
            )
        finally:
            save.stdout.close()
            saved = save.wait(CLI_TIMEOUT)
        if saved != 0 or load.returncode != 0:
            raise MultiNodeError(
                f"could not load {image} into the second Engine "
                f"(save exited {saved}): {load.stderr.strip()}"
            )
        timings["image_load"] = time.monotonic() - mark
        node = Node(
            engine=engine, run=run, address=address, inner=inner, timings=timings
        )
        if ssh:
            sshd, node.ssh_options = start_sshd(
                root / "ssh", inner, root / "docker.sock", netns
            )
            node.ssh = f"ssh://root@{inner}"
        yield node
    finally:
        errors: list[str] = []
        if sshd is not None:
            stop_sshd(sshd)
        try:
            engine.stop()
        except Exception as error:  # the rest is removed whatever failed here
            errors.append(f"second Engine stop: {error}")
        if netns in _netns():
            # What else runs in the namespace (sshd's sessions) goes with it.
            pids = _command("ip", "netns", "pids", netns, check=False).split()
            for pid in pids:
                with contextlib.suppress(ProcessLookupError, ValueError):
                    os.kill(int(pid), signal.SIGKILL)
        with contextlib.suppress(MultiNodeError):
            _command("ip", "netns", "del", netns, check=netns in _netns())
        if host_link in _links():
            _command("ip", "link", "del", host_link, check=False)
        _unmount_under(root)
        shutil.rmtree(root, ignore_errors=True)
        for what, gone in (
            (f"netns {netns}", netns not in _netns()),
            (f"link {host_link}", host_link not in _links()),
            (str(root), not root.exists()),
        ):
            if not gone:
                errors.append(f"{what} remains")
        if errors:
            raise MultiNodeError("teardown of the second Engine: " + "; ".join(errors))


@contextlib.contextmanager
def two_node_swarm(
    image: str,
    *,
    name_prefix: str | None = None,
    labels: dict[str, str] | None = None,
) -> Iterator[Swarm]:
    """Build the two-node swarm; take it all down on exit, whatever happened.

    :param image:
        An image on the machine's Engine, loaded into the second Engine too.
    :param name_prefix:
        Prefix of the overlay's and services' names (default ``wdmn-RUN``).
    :param labels:
        Labels of the overlay, and of services and their task containers.
    :raises MultiNodeError:
        If the machine's Engine is already in a swarm, if anything of the
        build fails, or if the teardown could not remove something.
    """
    manager = Engine(MANAGER_HOST)
    for what in clean_leftovers(manager):
        _log.warning("removed a leftover of a previous multi-node run: %s", what)
    state = manager.swarm_state()
    if state != "inactive":
        raise MultiNodeError(
            f"the machine's Engine is in swarm state {state!r}, not 'inactive': the "
            f"two-node swarm makes it the manager of a new swarm and leaves it again, "
            f"and must not take over a swarm that is not its own (leave it with "
            f"'docker swarm leave --force' if it is a leftover)"
        )
    begin = time.monotonic()
    networks_before = _networks(manager)
    with second_engine(image) as node:
        worker, address, timings = node.engine, node.address, node.timings
        swarm_init = False
        swarm: Swarm | None = None
        try:
            mark = time.monotonic()
            networks_to_remove = sorted({"docker_gwbridge", "ingress"} - networks_before)
            _write_state(
                worker.root, swarm_init=True, networks_to_remove=networks_to_remove
            )
            swarm_init = True
            manager.run(
                "swarm",
                "init",
                "--advertise-addr",
                address,
                "--listen-addr",
                f"{address}:2377",
            )
            manager.node_id = manager.out("info", "--format", "{{.Swarm.NodeID}}")
            token = manager.out("swarm", "join-token", "-q", "worker")
            worker.run("swarm", "join", "--token", token, f"{address}:2377")
            worker.node_id = worker.out("info", "--format", "{{.Swarm.NodeID}}")
            prefix = name_prefix or f"{PREFIX}-{node.run}"
            swarm = Swarm(
                manager=manager,
                worker=worker,
                address=address,
                overlay=f"{prefix}-mnoverlay",
                name_prefix=prefix,
                labels=dict(labels or {}),
                image=image,
                timings=timings,
            )
            swarm.wait_ready()
            timings["swarm"] = time.monotonic() - mark
            network_labels: list[str] = []
            for key, value in swarm.labels.items():
                network_labels += ["--label", f"{key}={value}"]
            manager.run(
                "network",
                "create",
                "--driver",
                "overlay",
                "--attachable",
                *network_labels,
                swarm.overlay,
            )
            timings["setup"] = time.monotonic() - begin
            _log.info("two-node swarm up in %.1f s: %s", timings["setup"], timings)
            yield swarm
        finally:
            end = time.monotonic()
            errors = _teardown(manager, worker, swarm, swarm_init, networks_before)
            timings["teardown"] = time.monotonic() - end
            _log.info("two-node swarm down in %.1f s", timings["teardown"])
            if errors:
                raise MultiNodeError(
                    "teardown of the two-node swarm: " + "; ".join(errors)
                )


def _teardown(
    manager: Engine,
    worker: SecondEngine,
    swarm: Swarm | None,
    swarm_init: bool,
    networks_before: set[str],
) -> list[str]:
    """Services, swarm and the second Engine; what could not be done."""
    errors: list[str] = []

    def attempt(what: str, action: Callable[[], object]) -> None:
        try:
            action()
        except Exception as error:  # every step runs, whatever failed before
            errors.append(f"{what}: {error}")

    if swarm_init and manager.swarm_state() == "active":
        services = manager.out("service", "ls", "-q").split()
        if swarm is not None:
            for service in services:
                attempt(f"service {service}", lambda s=service: swarm.remove_service(s))
            attempt(
                f"network {swarm.overlay}",
                lambda: manager.run("network", "rm", swarm.overlay, check=False),
            )
        if worker.running:
            attempt("worker leave", lambda: worker.run("swarm", "leave", "--force"))
        attempt("manager leave", lambda: manager.run("swarm", "leave", "--force"))
    attempt("second Engine stop", worker.stop)
    if swarm_init:
        for network in sorted({"docker_gwbridge", "ingress"} - networks_before):
            if network in _networks(manager):
                attempt(network, lambda n=network: manager.run("network", "rm", n))
        state = manager.swarm_state()
        if state != "inactive":
            errors.append(f"the machine's Engine is left in swarm state {state!r}")
    return errors
