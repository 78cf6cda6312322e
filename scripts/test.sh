#!/usr/bin/env bash
# Build everything (scripts/build.sh) and run every check and test against the
# real Docker Engine on this machine. This is the README's test command and what
# CI runs.
set -euo pipefail
cd "$(dirname "$0")/.."

bash scripts/build.sh
. .venv/bin/activate

echo "== packaging: the wool[docker] extra, end to end (scripts/check-extra.py)" >&2
python scripts/check-extra.py dist/wool_docker-*.whl

echo "== rust: fmt, clippy, tests" >&2
cargo fmt --all -- --check
cargo clippy --all-targets -- -D warnings
cargo test

echo "== python: ruff" >&2
ruff check python tests examples bench scripts upstream
ruff format --check python tests examples bench scripts upstream

echo "== python: stub and types" >&2
# Run from outside the checkout: python/ would shadow the installed packages.
allowlist="$PWD/.mypy-stubtest-allowlist"
(cd "${TMPDIR:-/tmp}" && python -m mypy.stubtest wool_docker._native --allowlist "$allowlist" \
  && python -m mypy -p wool_docker --ignore-missing-imports)

echo "== python: pytest (real daemon)" >&2
set +e
python -m pytest -p no:cacheprovider "$@"
status=$?
set -e
# pytest's 5 means "no tests collected": not a failure of the code under test.
if [ "$status" = 5 ]; then
  echo "pytest collected no tests" >&2
  exit 0
fi
exit "$status"
