"""Prove the ``wool[docker]`` extra end to end (issue 21); CI runs this after the build.

``python scripts/check-extra.py WHEEL``: builds wool 0.15.7 with the change in
``upstream/wool`` from its released wheel (patched, version ``0.15.7+docker``),
puts it, today's wool and our WHEEL in local wheelhouses, and checks in fresh
venvs installing with ``--no-index --find-links`` only:

1. ``pip install 'wool[docker]'`` installs wool-docker and the seed's import
   paths give wool-docker's classes, from wool's own modules;
2. with the patched wool alone, the seed's import paths raise an `ImportError`
   naming ``pip install 'wool[docker]'``;
3. after installing and uninstalling wool-docker, every file of wool's is
   intact and the clear error is back;
4. with today's wool 0.15.7, ``pip install wool-docker`` makes the seed's
   import paths work (served by our import hook) and writes nothing into
   wool's package; uninstalling it leaves wool intact.

wool 0.15.7 and its dependencies are fetched once from PyPI (``pip download``)
into ``.cache/check-extra`` (gitignored); everything after that is offline.
The released sdist cannot be built on its own (its ``pyproject.toml`` points at
``../build-hooks``), so the released wheel is patched: the two modules are
added as new files (failing if wool has them already) and the extra the
``pyproject.patch`` hunk declares goes into its METADATA.
Exit status 0 when every check passes; a line per failure otherwise.
"""

from __future__ import annotations

import base64
import csv
import hashlib
import io
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
import tomllib
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
UPSTREAM = ROOT / "upstream" / "wool"
CACHE = ROOT / ".cache" / "check-extra"
WOOL = "0.15.7"
LOCAL = f"{WOOL}+docker"
MODULES = ("wool/runtime/worker/docker.py", "wool/runtime/discovery/docker.py")
HINT = "pip install 'wool[docker]'"

PROBE = r"""
import importlib, json
result = {}
for module, name in (("wool.runtime.worker.docker", "DockerWorker"),
                     ("wool.runtime.discovery.docker", "DockerDiscovery")):
    try:
        value = getattr(importlib.import_module(module), name)
        exec(f"from {module} import {name}")
        origin = importlib.import_module(module).__spec__.origin
        result[module] = {"ok": f"{value.__module__}.{value.__name__}", "origin": origin}
    except ImportError as e:
        result[module] = {"error": f"{type(e).__name__}: {e}"}
print(json.dumps(result))
"""
"""Run in a venv: what each seed path gives, or the error it raises."""

INTACT = r"""
import base64, hashlib, json, os
from importlib import metadata
wool = metadata.distribution("wool")
bad = []
for file in wool.files:
    if file.hash is None:
        continue
    path = file.locate()
    if not os.path.isfile(path):
        bad.append(f"missing {file}")
        continue
    digest = hashlib.new(file.hash.mode, open(path, "rb").read()).digest()
    if base64.urlsafe_b64encode(digest).rstrip(b"=").decode() != file.hash.value:
        bad.append(f"changed {file}")
package = os.path.dirname(str(wool.locate_file("wool/__init__.py")))
listed = {os.path.normpath(str(f.locate())) for f in wool.files}
for directory, _, names in os.walk(package):
    for name in names:
        path = os.path.normpath(os.path.join(directory, name))
        if "__pycache__" not in path and path not in listed:
            bad.append(f"foreign file {os.path.relpath(path, package)}")
print(json.dumps({"version": wool.version, "bad": bad}))
"""
"""Run in a venv: wool's installed files against its RECORD, and files in
wool's package that wool did not install."""


def main(argv: list[str]) -> int:
    (wheel,) = argv
    ours = Path(wheel).resolve()
    started = time.monotonic()
    deps, released = fetch()
    failures: list[str] = []
    with tempfile.TemporaryDirectory(prefix="wool-docker-check-extra-") as tmp:
        work = Path(tmp)
        patched = work / "patched"
        patched.mkdir()
        patch_wool(released, patched)
        mine = work / "ours"
        mine.mkdir()
        shutil.copy2(ours, mine)
        today = released.parent

        # 1 and 3: the extra installs us; uninstalling us leaves wool whole.
        venv = make_venv(work / "extra")
        pip(venv, [deps, patched, mine], "install", "wool[docker]")
        failures += expect_working(venv, "1 wool[docker]", own_modules=True)
        failures += expect_intact(venv, "1 wool[docker]", LOCAL)
        pip(venv, [], "uninstall", "--yes", "wool-docker")
        failures += expect_intact(venv, "3 after uninstall", LOCAL)
        failures += expect_hint(venv, "3 after uninstall")

        # 2: the patched wool alone says how to get the Docker parts.
        venv = make_venv(work / "alone")
        pip(venv, [deps, patched], "install", "wool")
        failures += expect_hint(venv, "2 wool alone")

        # 4: today's wool; our hook serves the seed paths, wool's package untouched.
        venv = make_venv(work / "today")
        pip(venv, [deps, today, mine], "install", "wool-docker")
        failures += expect_working(venv, "4 today's wool", own_modules=False)
        failures += expect_intact(venv, "4 today's wool", WOOL)
        pip(venv, [], "uninstall", "--yes", "wool-docker")
        failures += expect_intact(venv, "4 after uninstall", WOOL)
    for failure in failures:
        print(f"check-extra: {failure}", file=sys.stderr)
    took = time.monotonic() - started
    if not failures:
        print(f"check-extra: ok, 4 checks in 3 fresh venvs ({took:.0f} s)")
    return 1 if failures else 0


def fetch() -> tuple[Path, Path]:
    """wool 0.15.7's dependencies' wheels and its released wheel, cached.

    :returns:
        The directory of dependencies (without wool) and the path of wool's
        released wheel, in a directory of its own.
    """
    deps = CACHE / "deps"
    released = CACHE / "wool" / f"wool-{WOOL}-py3-none-any.whl"
    stamp = CACHE / f"complete-{sys.version_info[0]}.{sys.version_info[1]}"
    if not stamp.exists():
        shutil.rmtree(CACHE, ignore_errors=True)
        deps.mkdir(parents=True)
        released.parent.mkdir(parents=True)
        run(
            [
                sys.executable,
                "-m",
                "pip",
                "download",
                "--quiet",
                "--only-binary",
                ":all:",
            ]
            + ["--dest", str(deps), f"wool=={WOOL}"]
        )
        shutil.move(deps / released.name, released)
        stamp.touch()
    return deps, released


def patch_wool(released: Path, into: Path) -> Path:
    """wool's released wheel with the upstream change, version ``0.15.7+docker``."""
    extra = declared_extra()
    old_info, new_info = f"wool-{WOOL}.dist-info", f"wool-{LOCAL}.dist-info"
    files: dict[str, bytes] = {}
    with zipfile.ZipFile(released) as archive:
        for name in archive.namelist():
            if not name.endswith("/RECORD"):
                files[name.replace(old_info, new_info, 1)] = archive.read(name)
    for module in MODULES:
        if module in files:
            raise SystemExit(f"check-extra: wool {WOOL} has {module} already")
        files[module] = (UPSTREAM / "src" / module).read_bytes()
    metadata = files[f"{new_info}/METADATA"].decode()
    headers, blank, body = metadata.partition("\n\n")
    headers = re.sub(r"^Version: .*$", f"Version: {LOCAL}", headers, flags=re.M)
    headers += "\nProvides-Extra: docker" + "".join(
        f'\nRequires-Dist: {requirement}; extra == "docker"' for requirement in extra
    )
    files[f"{new_info}/METADATA"] = (headers + blank + body).encode()
    record = io.StringIO()
    writer = csv.writer(record, lineterminator="\n")
    for name, data in files.items():
        digest = base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=")
        writer.writerow((name, f"sha256={digest.decode()}", len(data)))
    writer.writerow((f"{new_info}/RECORD", "", ""))
    files[f"{new_info}/RECORD"] = record.getvalue().encode()
    path = into / f"wool-{LOCAL}-py3-none-any.whl"
    with zipfile.ZipFile(path, "w", zipfile.ZIP_DEFLATED) as archive:
        for name, data in files.items():
            archive.writestr(name, data)
    return path


def declared_extra() -> list[str]:
    """The ``docker`` extra's requirements, as ``pyproject.patch`` adds them."""
    text = (UPSTREAM / "pyproject.patch").read_text()
    added = [line[1:] for line in text.splitlines() if line.startswith("+docker")]
    if len(added) != 1:
        raise SystemExit("check-extra: pyproject.patch must add one 'docker = [...]'")
    return tomllib.loads(added[0])["docker"]


def make_venv(path: Path) -> Path:
    """A fresh venv without pip (our pip installs into it with ``--python``)."""
    run([sys.executable, "-m", "venv", "--without-pip", str(path)])
    return path / "bin" / "python"


def pip(venv: Path, links: list[Path], *args: str) -> None:
    """``pip ARGS`` for a venv, offline: only the given wheelhouses."""
    command = [sys.executable, "-m", "pip", "--python", str(venv), *args, "--quiet"]
    if args[0] == "install":
        command += ["--no-index", "--no-cache-dir"]
        for link in links:
            command += ["--find-links", str(link)]
    run(command)


def probe(venv: Path, script: str) -> dict:
    """Run a probe script in a venv, from a directory with nothing importable."""
    output = run([str(venv), "-c", script], cwd=venv.parent.parent)
    return json.loads(output)


def expect_working(venv: Path, check: str, *, own_modules: bool) -> list[str]:
    """The seed's paths give wool-docker's classes, served by wool or by us."""
    failures = []
    for module, result in probe(venv, PROBE).items():
        if "ok" not in result:
            failures.append(f"{check}: {module} failed: {result['error']}")
            continue
        served = result["origin"] == "wool-docker"
        if served == own_modules:
            where = "our hook" if served else result["origin"]
            failures.append(f"{check}: {module} came from {where}")
        if not result["ok"].startswith("wool_docker."):
            failures.append(f"{check}: {module} gave {result['ok']}")
    return failures


def expect_hint(venv: Path, check: str) -> list[str]:
    """The seed's paths raise an ImportError naming the extra."""
    failures = []
    for module, result in probe(venv, PROBE).items():
        error = result.get("error", "")
        if not (error.startswith("ImportError:") and HINT in error):
            failures.append(f"{check}: {module} gave {result} not the install hint")
    return failures


def expect_intact(venv: Path, check: str, version: str) -> list[str]:
    """wool's files are as it installed them, and its package holds no other."""
    result = probe(venv, INTACT)
    failures = [f"{check}: wool {problem}" for problem in result["bad"]]
    if result["version"] != version:
        failures.append(f"{check}: wool {result['version']} installed, not {version}")
    return failures


def run(command: list[str], cwd: Path | None = None) -> str:
    """Run a command with pip's configuration off; its output, or exit with it."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PIP_")}
    env["PIP_CONFIG_FILE"] = os.devnull
    env["PIP_DISABLE_PIP_VERSION_CHECK"] = "1"
    if "download" in command:
        # Fetching from PyPI keeps the machine's own pip settings (certificates).
        env = dict(os.environ)
    result = subprocess.run(
        command, capture_output=True, text=True, cwd=cwd, env=env, check=False
    )
    if result.returncode != 0:
        raise SystemExit(
            f"check-extra: {' '.join(command)} exited {result.returncode}:\n"
            f"{result.stdout}{result.stderr}"
        )
    return result.stdout


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
