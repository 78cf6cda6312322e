"""Check a built wool-docker wheel before it ships (CI runs this on every build).

``python scripts/check-wheel.py WHEEL``: fails (exit 1, a line per problem) if
the wheel's platform tag, or a glibc symbol version its native module needs, is
newer than manylinux2014 (glibc 2.17), if it lacks the seed's import hook, the
type stubs or the license, or if it writes any file into wool's own package.
"""

from __future__ import annotations

import re
import sys
import zipfile
from pathlib import Path

GLIBC_MAX = (2, 17)
"""manylinux2014's glibc: what Debian 11, Ubuntu 20.04, RHEL 8 and Amazon Linux 2
all have or exceed."""

REQUIRED = (
    "wool_docker.pth",
    "_wool_docker_seed.py",
    "wool_docker/__init__.py",
    "wool_docker/_native.pyi",
    "wool_docker/py.typed",
)
"""Files every wheel must carry: the seed's import hook (the ``.pth`` that loads
it at start-up, and the finder) and the stubs."""

HOOK_LINE = "import _wool_docker_seed"
"""The one line of ``wool_docker.pth``: a start-up cost for every interpreter."""


def platform_problems(name: str) -> list[str]:
    """Problems with the platform tags in a wheel's file name."""
    platforms = name.removesuffix(".whl").split("-")[-1].split(".")
    problems = []
    for tag in platforms:
        legacy = {"manylinux1_x86_64": (2, 5), "manylinux2010_x86_64": (2, 12)}
        legacy["manylinux2014_x86_64"] = (2, 17)
        match = re.fullmatch(r"manylinux_(\d+)_(\d+)_x86_64", tag)
        glibc = legacy.get(tag) or (
            (int(match.group(1)), int(match.group(2))) if match else None
        )
        if glibc is None:
            problems.append(f"platform tag {tag} is not a manylinux x86_64 tag")
        elif glibc > GLIBC_MAX:
            problems.append(f"platform tag {tag} needs glibc newer than 2.17")
    return problems


def main(argv: list[str]) -> int:
    (path,) = argv
    wheel = Path(path)
    problems = platform_problems(wheel.name)
    with zipfile.ZipFile(wheel) as archive:
        names = set(archive.namelist())
        problems += [f"missing {f}" for f in REQUIRED if f not in names]
        # wool's package is wool's: installing or removing us must not touch it.
        problems += [
            f"{n} is inside wool's package" for n in names if n.startswith("wool/")
        ]
        if "wool_docker.pth" in names:
            lines = archive.read("wool_docker.pth").decode().splitlines()
            if lines != [HOOK_LINE]:
                problems.append(f"wool_docker.pth must hold just {HOOK_LINE!r}")
        if not any(n.endswith(".dist-info/licenses/LICENSE") for n in names) and not any(
            n.endswith(".dist-info/LICENSE") for n in names
        ):
            problems.append("missing the license file in .dist-info")
        natives = [n for n in names if re.fullmatch(r"wool_docker/_native.*\.so", n)]
        if not natives:
            problems.append("missing the native module wool_docker/_native*.so")
        for native in natives:
            # The versions of glibc's symbols the module links against.
            needed = {
                (int(a), int(b))
                for a, b in re.findall(rb"GLIBC_(\d+)\.(\d+)", archive.read(native))
            }
            newest = max(needed, default=(0, 0))
            if newest > GLIBC_MAX:
                problems.append(
                    f"{native} needs glibc {newest[0]}.{newest[1]} symbols (max 2.17)"
                )
    for problem in problems:
        print(f"check-wheel: {wheel.name}: {problem}", file=sys.stderr)
    if not problems:
        print(f"check-wheel: {wheel.name}: ok ({wheel.stat().st_size // 1024} KiB)")
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
