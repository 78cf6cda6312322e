#!/usr/bin/env bash
# Benchmarks (issue 6): start latency, dispatch, discovery latency and scale, and the
# aiodocker baseline, in one run. Prints a table; raw numbers go to
# bench/results/<timestamp>.json and the chart to bench/results/start-latency.png.
#   scripts/bench.sh [--quick] [--repeats N] [--only SECTION[,SECTION]]
# Needs the venv with wool-docker installed (scripts/build.sh) and the worker image
# (WOOL_DOCKER_IMAGE, default wool-docker-worker:dev) and base image
# (wool-docker-base:bookworm) on the Engine.
set -euo pipefail
cd "$(dirname "$0")/.."
. .venv/bin/activate
if ! python -c "import aiodocker, matplotlib" >/dev/null 2>&1; then
  pip install -q aiodocker matplotlib
fi
exec python -m bench.run "$@"
