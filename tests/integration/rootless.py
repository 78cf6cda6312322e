"""A rootless Docker Engine on this machine, for the tests of an Engine in
another network namespace run by an unprivileged user.

`rootless_engine` makes a throwaway user with subordinate id ranges, lets it
open ``/dev/net/tun`` (slirp4netns) and ``/dev/fuse`` (fuse-overlayfs) through
device ACLs naming that user only (this machine has no udev to make them
0666, as a desktop does), and starts Debian's ``dockerd-rootless.sh`` as that
user with its own ``XDG_RUNTIME_DIR`` and data root. Everything is removed on
exit: the Engine and every process of the user or its subordinate ids, the
ACL entries, the user (and its subordinate ranges), and the directory.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from uuid import uuid4

from .multinode import Engine
from .multinode import wait_for

PREFIX = "wool-rootless-"
"""Users, and the temporary directories they live in, start with this."""

ROOTLESS_SCRIPT = Path("/usr/share/docker.io/contrib/dockerd-rootless.sh")
"""Debian's docker.io ships it; it re-executes dockerd under rootlesskit."""

DEVICES = ("/dev/net/tun", "/dev/fuse")
"""The devices an unprivileged Engine opens: a tap for slirp4netns, FUSE for
fuse-overlayfs."""

PACKAGES = {
    "rootlesskit": "/usr/bin/rootlesskit",
    "slirp4netns": "/usr/bin/slirp4netns",
    "uidmap": "/usr/bin/newuidmap",
    "fuse-overlayfs": "/usr/bin/fuse-overlayfs",
    "acl": "/usr/bin/setfacl",
}
"""Debian packages the Engine needs, each by a file it installs."""

START_TIMEOUT = 60.0
"""Seconds the Engine may take to answer (about 1 s here)."""

STOP_TIMEOUT = 30.0
"""Seconds the Engine and its processes may take to end."""

SUBID_BASE = 100_000
SUBID_COUNT = 65_536


class RootlessError(RuntimeError):
    """The rootless Engine could not be set up or taken down."""


@dataclass
class RootlessEngine(Engine):
    """The Engine, at ``unix://ROOT/run/docker.sock``, and the user running it."""

    user: str = ""
    uid: int = 0
    subuids: range = range(0)


def _run(*args: str, env: dict[str, str] | None = None) -> str:
    """Run a command; its output; `RootlessError` naming it if it fails."""
    result = subprocess.run(
        args, capture_output=True, text=True, timeout=300, check=False, env=env
    )
    if result.returncode != 0:
        raise RootlessError(
            f"{' '.join(args)} exited {result.returncode}: {result.stderr.strip()}"
        )
    return result.stdout


def ensure_packages() -> None:
    """Install the Debian packages the Engine needs, if any is missing."""
    missing = [name for name, path in PACKAGES.items() if not os.path.exists(path)]
    if missing:
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        try:
            _run("apt-get", "install", "-y", "-qq", *missing, env=env)
        except RootlessError:
            _run("apt-get", "update", "-qq", env=env)
            _run("apt-get", "install", "-y", "-qq", *missing, env=env)
    if not ROOTLESS_SCRIPT.exists():
        raise RootlessError(
            f"{ROOTLESS_SCRIPT} is missing: it comes with Debian's docker.io, "
            "whose dockerd the rootless Engine runs"
        )


def _subids(path: str, user: str) -> range | None:
    """The user's subordinate range in ``/etc/subuid`` or ``/etc/subgid``."""
    for line in Path(path).read_text().splitlines():
        name, _, rest = line.partition(":")
        start, _, count = rest.partition(":")
        if name == user and start.isdigit() and count.isdigit():
            return range(int(start), int(start) + int(count))
    return None


def _free_subids() -> int:
    """The first id after every range given out in subuid and subgid."""
    end = SUBID_BASE
    for path in ("/etc/subuid", "/etc/subgid"):
        for line in Path(path).read_text().splitlines():
            parts = line.split(":")
            if len(parts) == 3 and parts[1].isdigit() and parts[2].isdigit():
                end = max(end, int(parts[1]) + int(parts[2]))
    return end


def _processes(uids: set[int] | range) -> list[int]:
    """Pids of the processes whose real uid is in ``uids``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            status = (entry / "status").read_text()
        except OSError:
            continue
        for line in status.splitlines():
            if line.startswith("Uid:"):
                if int(line.split()[1]) in uids:
                    pids.append(int(entry.name))
                break
    return pids


def _end_processes(uid: int, subuids: range) -> None:
    """SIGKILL every process of the user or of its subordinate ids, by pid,
    and wait until none is left."""

    def left() -> list[int]:
        return _processes({uid}) + (_processes(subuids) if subuids else [])

    for pid in left():
        with contextlib.suppress(ProcessLookupError):
            os.kill(pid, signal.SIGKILL)
    wait_for(
        lambda: True if not left() else None,
        timeout=STOP_TIMEOUT,
        what=f"the processes of uid {uid} to end",
    )


def _drop_acl(device: str, user: str) -> None:
    """Remove the user's ACL entry on ``device``; and the whole ACL once no
    other named entry is left, so the device is as it was (``setfacl -x``
    leaves the mask behind)."""
    subprocess.run(
        ["setfacl", "-x", f"u:{user}", device], capture_output=True, check=False
    )
    entries = _run("getfacl", "--omit-header", "--absolute-names", device).split()
    named = [
        e for e in entries if e.split(":")[0] in ("user", "group") and e.split(":")[1]
    ]
    if not named:
        _run("setfacl", "-b", device)


def _remove_user(user: str) -> None:
    """Take the user down: its processes, device ACL entries, the account
    (with its home and subordinate ranges)."""
    try:
        entry = pwd.getpwnam(user)
    except KeyError:
        return
    subuids = _subids("/etc/subuid", user) or range(0)
    _end_processes(entry.pw_uid, subuids)
    for device in DEVICES:
        _drop_acl(device, user)
    _run("userdel", "--remove", user)
    for path in ("/etc/subuid", "/etc/subgid"):
        if _subids(path, user) is not None:
            raise RootlessError(f"userdel left {user}'s range in {path}")


def clean_leftovers() -> list[str]:
    """Remove the users and directories of runs whose process is gone."""
    removed = []
    for entry in pwd.getpwall():
        root = Path(entry.pw_dir).parent
        ours = root.parent == Path(tempfile.gettempdir()) and root.name.startswith(
            PREFIX
        )
        if not entry.pw_name.startswith(PREFIX) or not ours:
            continue
        owner = root / "owner"
        with contextlib.suppress(OSError, ValueError):
            pid = int(owner.read_text())
            if Path(f"/proc/{pid}").exists():
                continue
        _remove_user(entry.pw_name)
        shutil.rmtree(root, ignore_errors=True)
        removed.append(entry.pw_name)
    return removed


def _unmount_under(root: Path) -> None:
    """Lazily unmount whatever this machine's namespace has mounted in ``root``."""
    mounts = Path("/proc/self/mounts").read_text().splitlines()
    for line in mounts:
        target = line.split()[1]
        if target.startswith(f"{root}/"):
            subprocess.run(["umount", "-l", target], capture_output=True, check=False)


@contextlib.contextmanager
def rootless_engine(image: str) -> Iterator[RootlessEngine]:
    """A rootless Docker Engine run by a throwaway user, with ``image`` loaded.

    :raises RootlessError:
        If it cannot be set up (with the Engine's log), or taken down.
    """
    ensure_packages()
    clean_leftovers()
    run = uuid4().hex[:8]
    user = f"{PREFIX}{run}"
    root = Path(tempfile.mkdtemp(prefix=f"{user}-"))
    root.chmod(0o755)
    (root / "owner").write_text(str(os.getpid()))
    home, runtime = root / "home", root / "run"
    log = root / "dockerd.log"
    engine = RootlessEngine(host=f"unix://{runtime}/docker.sock", user=user)
    dockerd: subprocess.Popen[bytes] | None = None
    try:
        _run(
            "useradd",
            "--create-home",
            "--home-dir",
            str(home),
            "--shell",
            "/usr/sbin/nologin",
            "--user-group",
            user,
        )
        entry = pwd.getpwnam(user)
        engine.uid = entry.pw_uid
        if _subids("/etc/subuid", user) is None or _subids("/etc/subgid", user) is None:
            start = _free_subids()
            span = f"{start}-{start + SUBID_COUNT - 1}"
            _run("usermod", "--add-subuids", span, "--add-subgids", span, user)
        engine.subuids = _subids("/etc/subuid", user) or range(0)
        for device in DEVICES:
            _run("setfacl", "-m", f"u:{user}:rw", device)
        runtime.mkdir(mode=0o700)
        os.chown(runtime, entry.pw_uid, entry.pw_gid)

        env = {
            "HOME": str(home),
            "USER": user,
            "XDG_RUNTIME_DIR": str(runtime),
            "PATH": f"{ROOTLESS_SCRIPT.parent}:/usr/sbin:/usr/bin:/sbin:/bin",
        }
        with log.open("wb") as out:
            dockerd = subprocess.Popen(
                [
                    "setpriv",
                    f"--reuid={entry.pw_uid}",
                    f"--regid={entry.pw_gid}",
                    "--init-groups",
                    str(ROOTLESS_SCRIPT),
                    "--data-root",
                    str(home / "data"),
                    "--exec-root",
                    str(runtime / "docker"),
                    "--pidfile",
                    str(runtime / "docker.pid"),
                    "--storage-driver",
                    "fuse-overlayfs",
                    "-H",
                    engine.host,
                ],  # fmt: skip
                env=env,
                cwd=home,
                stdin=subprocess.DEVNULL,
                stdout=out,
                stderr=subprocess.STDOUT,
                start_new_session=True,
            )

        def answering() -> bool | None:
            if dockerd is not None and dockerd.poll() is not None:
                raise RootlessError(
                    f"the rootless Engine exited {dockerd.returncode}:\n"
                    + log.read_text(errors="replace")[-3000:]
                )
            return True if engine.answers() else None

        wait_for(answering, timeout=START_TIMEOUT, what="the rootless Engine to answer")
        security = engine.out("info", "--format", "{{json .SecurityOptions}}")
        if "rootless" not in security:
            raise RootlessError(f"the Engine is not rootless: {security}")

        save = subprocess.Popen(["docker", "save", image], stdout=subprocess.PIPE)
        try:
            load = subprocess.run(
                ["docker", "-H", engine.host, "load"],
                stdin=save.stdout,
                capture_output=True,
                timeout=300,
                check=False,
            )
        finally:
            if save.stdout is not None:
                save.stdout.close()
            save.wait(timeout=300)
        if save.returncode != 0 or load.returncode != 0:
            raise RootlessError(f"loading {image}: {load.stderr.decode().strip()}")
        yield engine
    finally:
        if dockerd is not None and dockerd.poll() is None:
            # dockerd stops its containers and containerd on SIGTERM; the
            # user's processes that outlive it are killed by pid below.
            with contextlib.suppress(ProcessLookupError):
                os.killpg(dockerd.pid, signal.SIGTERM)
            try:
                dockerd.wait(timeout=STOP_TIMEOUT)
            except subprocess.TimeoutExpired:
                os.killpg(dockerd.pid, signal.SIGKILL)
                dockerd.wait(timeout=STOP_TIMEOUT)
        _remove_user(user)
        _unmount_under(root)
        shutil.rmtree(root)
