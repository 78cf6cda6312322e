#!/usr/bin/env bash
# Build everything (scripts/build.sh), then run a WorkerPool of Docker workers on a
# fresh bridge network and print which container computed what.
set -euo pipefail
cd "$(dirname "$0")/.."
bash scripts/build.sh
. .venv/bin/activate
network="${WOOL_DOCKER_NETWORK:-wool-demo}"
created=0
if ! docker network inspect "$network" >/dev/null 2>&1; then
  docker network create "$network" >/dev/null
  created=1
fi
cleanup() { [ "$created" = 1 ] && docker network rm "$network" >/dev/null || true; }
trap cleanup EXIT
WOOL_DOCKER_NETWORK="$network" python examples/demo.py
