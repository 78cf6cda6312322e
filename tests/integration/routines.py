"""Routines the integration tests dispatch to worker containers.

A worker container does not have this test tree on its path, and cloudpickle
pickles a module-level function by reference (module and name) unless its
module is registered for pickling by value. This module registers itself, so
every routine here travels to the container as code.
"""

from __future__ import annotations

import asyncio
import os
import socket
import sys
import time

import cloudpickle
import wool


@wool.routine
async def hostname() -> str:
    """Return the hostname of the process serving this call.

    In a container that is the first 12 hex digits of the container's id.
    """
    return socket.gethostname()


@wool.routine
async def burn(seconds: float) -> str:
    """Keep one CPU busy for ``seconds``; return ``hostname/pid`` of the server.

    The pid tells `LocalWorker`s apart, which share the host's name.
    """
    end = time.perf_counter() + seconds
    while time.perf_counter() < end:
        pass
    return f"{socket.gethostname()}/{os.getpid()}"


@wool.routine
async def nap(token: str, seconds: float) -> str:
    """Announce ``napping <token>`` on stdout, sleep, and return ``token``.

    The announcement reaches the owner through the container's output, so a
    test can wait for the routine to be running instead of guessing.
    """
    print(f"napping {token}", flush=True)
    await asyncio.sleep(seconds)
    return token


@wool.routine
async def probe() -> dict:
    """Try, from inside the worker, what a hostile routine would try.

    Returns what it found: the user, the capability and privilege bits, whether
    a raw packet socket opens, which paths are writable, and the mounts of the
    tmpfs directories.
    """
    status = dict(
        line.split(":\t", 1)
        for line in open("/proc/self/status").read().splitlines()
        if ":\t" in line
    )
    try:
        socket.socket(socket.AF_PACKET, socket.SOCK_RAW).close()
        raw = "opened"
    except OSError as e:
        raw = e.strerror or str(e)
    writable = {}
    for directory in ("/", "/usr", "/opt/wool", "/tmp", os.environ.get("HOME", "/")):
        path = os.path.join(directory, f".probe-{os.getpid()}")
        try:
            with open(path, "w") as file:
                file.write("x")
            os.unlink(path)
            writable[directory] = True
        except OSError:
            writable[directory] = False
    tls = {}
    for variable in ("WOOL_TLS_CA", "WOOL_TLS_CERT", "WOOL_TLS_KEY"):
        if variable in os.environ:
            st = os.stat(os.environ[variable])
            tls[variable] = (oct(st.st_mode & 0o777), st.st_uid)
    mounts = {
        fields[1]: fields[2]
        for fields in (line.split() for line in open("/proc/mounts"))
        if len(fields) > 2
    }
    return {
        "uid": os.getuid(),
        "gid": os.getgid(),
        "cap_eff": status["CapEff"].strip(),
        "no_new_privs": status["NoNewPrivs"].strip(),
        "raw_socket": raw,
        "writable": writable,
        "tls": tls,
        "mounts": mounts,
        "home": os.environ.get("HOME"),
    }


@wool.routine
async def engine_ping(path: str = "/var/run/docker.sock") -> str:
    """Ask the Engine socket at ``path`` for ``/_ping``; return its answer's body,
    or the error that stopped the request."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(10)
            conn.connect(path)
            conn.sendall(b"GET /_ping HTTP/1.0\r\nHost: docker\r\n\r\n")
            reply = b""
            while chunk := conn.recv(4096):
                reply += chunk
    except OSError as e:
        return f"error: {e.strerror or e}"
    return reply.rsplit(b"\r\n\r\n", 1)[-1].decode()


@wool.routine
async def spawn_threads(most: int) -> int:
    """Start up to ``most`` idle threads; return how many started.

    Threads are tasks of the container's pids cgroup, as processes are: the
    count stops at the container's pids limit. All of them are ended before
    this returns.
    """
    import threading

    release = threading.Event()
    started = []
    try:
        for _ in range(most):
            thread = threading.Thread(target=release.wait, daemon=True)
            try:
                thread.start()
            except RuntimeError:
                break
            started.append(thread)
    finally:
        release.set()
        for thread in started:
            thread.join()
    return len(started)


@wool.routine
async def setid_files() -> list[str]:
    """Every file of this container's root file system (not other mounts)
    that this user can see and that has the setuid or setgid bit."""
    import stat

    def lstat(path: str) -> os.stat_result | None:
        try:
            return os.lstat(path)
        except OSError:
            return None

    root = os.lstat("/").st_dev
    found = []
    for directory, subdirectories, files in os.walk("/"):
        subdirectories[:] = [
            d
            for d in subdirectories
            if (info := lstat(os.path.join(directory, d))) and info.st_dev == root
        ]
        for name in files:
            path = os.path.join(directory, name)
            info = lstat(path)
            setid = info and info.st_mode & (stat.S_ISUID | stat.S_ISGID)
            if info and stat.S_ISREG(info.st_mode) and setid:
                found.append(path)
    return found


def reject_all(context: object) -> bool:
    """A backpressure hook that rejects every task (``True`` rejects)."""
    return True


def accept_all(context: object) -> bool:
    """A backpressure hook that accepts every task."""
    return False


cloudpickle.register_pickle_by_value(sys.modules[__name__])
