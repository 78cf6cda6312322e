#!/usr/bin/env bash
# Every check and test of the project. Two tiers:
#   scripts/test.sh [PYTEST ARGS]         the full tier: builds everything
#     (scripts/build.sh: release wheel, venv, worker image) and runs every check
#     and test against the real Docker Engine on this machine. This is the
#     README's test command and what CI runs.
#   scripts/test.sh --fast [PYTEST ARGS]  the fast tier: the same lints, the Rust
#     unit tests and every pytest test not marked integration, against a debug
#     wheel (scripts/build.sh --fast). Needs no Docker Engine.
# Extra arguments go to pytest.
set -euo pipefail
cd "$(dirname "$0")/.."

fast=0
if [ "${1:-}" = "--fast" ]; then
  fast=1
  shift
fi

echo "== lint: rustfmt, module cycles (scripts/modcycles.py)" >&2
cargo fmt --all -- --check
python3 scripts/modcycles.py

if [ "$fast" = 1 ]; then
  bash scripts/build.sh --fast
else
  bash scripts/build.sh
fi
. .venv/bin/activate

echo "== lint: ruff" >&2
ruff check python tests examples bench scripts upstream
ruff format --check python tests examples bench scripts upstream

if [ "$fast" = 0 ]; then
  echo "== packaging: the wool[docker] extra, end to end (scripts/check-extra.py)" >&2
  python scripts/check-extra.py dist/wool_docker-*.whl
fi

echo "== rust: clippy, tests" >&2
cargo clippy --all-targets -- -D warnings
if [ "$fast" = 1 ]; then
  cargo test --lib
else
  # Tests that need the Engine are #[ignore]d so `cargo test` alone stays fast.
  cargo test -- --include-ignored
fi

echo "== python: stub and types" >&2
# Run from outside the checkout: python/ would shadow the installed packages.
allowlist="$PWD/.mypy-stubtest-allowlist"
(cd "${TMPDIR:-/tmp}" && python -m mypy.stubtest wool_docker._native --allowlist "$allowlist" \
  && python -m mypy -p wool_docker --ignore-missing-imports)

marker=()
if [ "$fast" = 1 ]; then
  echo "== python: pytest (not integration)" >&2
  marker=(-m "not integration")
else
  echo "== python: pytest (real daemon)" >&2
fi
set +e
python -m pytest -p no:cacheprovider "${marker[@]}" "$@"
status=$?
set -e
# pytest's 5 means "no tests collected": not a failure of the code under test.
if [ "$status" = 5 ]; then
  echo "pytest collected no tests" >&2
  exit 0
fi
exit "$status"
