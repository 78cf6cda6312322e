#!/usr/bin/env bash
# Build the sdist and install it into a fresh venv from source (needs a Rust
# toolchain and PyPI for maturin and wool), then check that the installed
# package, the seed's import paths and the command line work.
#   scripts/check-sdist.sh
set -euo pipefail
cd "$(dirname "$0")/.."

. .venv/bin/activate
rm -f dist/wool_docker-*.tar.gz
maturin sdist -o dist >/dev/null
sdist=$(ls dist/wool_docker-*.tar.gz)
deactivate

scratch=$(mktemp -d /var/tmp/wool-docker-sdist.XXXXXX)
trap 'rm -rf "$scratch"' EXIT
"${PYTHON:-python3}" -m venv "$scratch/venv"
"$scratch/venv/bin/python" -m pip install -q --upgrade pip >/dev/null
echo "building $sdist from source in a fresh venv (a few minutes)" >&2
"$scratch/venv/bin/python" -m pip install -q "$sdist"
# Outside the checkout, so python/ cannot shadow the installed package (the seed's
# paths come from the import hook the wheel installs).
(cd "$scratch" && venv/bin/python - <<'PY'
import wool_docker
from wool.runtime.discovery.docker import DockerDiscovery
from wool.runtime.worker.docker import DockerWorker

assert DockerWorker is wool_docker.DockerWorker
assert DockerDiscovery is wool_docker.DockerDiscovery
print(f"sdist install ok: wool-docker {wool_docker.__version__}")
PY
)
"$scratch/venv/bin/wool-docker" --version
