#!/usr/bin/env bash
# Build everything a fresh machine needs, offline from image registries:
#   1. a venv (.venv) with maturin and the test tools,
#   2. the wool-docker wheel (release, manylinux2014: glibc 2.17, through zig) checked
#      and installed into it,
#   3. the Python base image (debootstrap; cached),
#   4. the worker image from that wheel (cached by wheel hash);
# and Debian's faketime, docker-registry and apache2-utils (htpasswd) for the tests.
# Usage: scripts/build.sh [--no-image | --fast]
#   --no-image: steps 1 and 2 only.
#   --fast: the venv and a debug wheel for this machine only (no zig, no
#     manylinux check, no image), for the fast test tier (scripts/test.sh --fast).
set -euo pipefail
cd "$(dirname "$0")/.."

want_image=1
fast=0
case "${1:-}" in
  --no-image) want_image=0 ;;
  --fast) want_image=0 fast=1 ;;
  "") ;;
  *) echo "usage: scripts/build.sh [--no-image | --fast]" >&2; exit 2 ;;
esac

# Debian test tools: libfaketime, for the test of a client clock ahead of the Engine's.
if [ ! -e /usr/lib/x86_64-linux-gnu/faketime/libfaketimeMT.so.1 ]; then
  echo "installing faketime" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq faketime >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq faketime >/dev/null; }
fi

# Debian test tools: an OpenSSH server, for the tests of ssh:// Engines (they
# run their own sshd in a namespace). Installed without starting the machine's
# own sshd: a policy-rc.d that refuses every service start, during the install only.
if [ ! -x /usr/sbin/sshd ] || ! command -v ssh >/dev/null; then
  echo "installing openssh-server" >&2
  export DEBIAN_FRONTEND=noninteractive
  policy=/usr/sbin/policy-rc.d
  own_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy" && chmod +x "$policy" && own_policy=1
  fi
  apt-get install -y -qq openssh-server openssh-client >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq openssh-server openssh-client >/dev/null; } \
    || { [ "$own_policy" = 1 ] && rm -f "$policy"; exit 1; }
  if [ "$own_policy" = 1 ]; then rm -f "$policy"; fi
fi

# Debian test tools: a private registry (distribution 2.8) and htpasswd for its
# users, for the tests of images pulled from and pushed to a registry.
if ! command -v docker-registry >/dev/null || ! command -v htpasswd >/dev/null; then
  echo "installing docker-registry and apache2-utils" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get install -y -qq docker-registry apache2-utils >/dev/null 2>&1 \
    || { apt-get update -qq && apt-get install -y -qq docker-registry apache2-utils >/dev/null; }
  # The package enables a registry service of its own; the tests run theirs.
  if command -v systemctl >/dev/null && systemctl is-active --quiet docker-registry 2>/dev/null; then
    systemctl disable --now docker-registry >/dev/null 2>&1 || true
  fi
fi

py=${PYTHON:-python3}
if [ ! -x .venv/bin/python ]; then
  "$py" -m venv .venv
fi
. .venv/bin/activate
python -m pip install -q --upgrade pip >/dev/null
# Build tools pinned: maturin links with zig (from PyPI, no system toolchain) so the
# wheel runs on glibc 2.17 and newer, not only on this machine's glibc.
python -m pip install -q "maturin==1.16.0" "ziglang==0.15.2" "pytest>=8" \
  "pytest-asyncio>=0.24" "pytest-mock>=3.14" "hypothesis>=6" "ruff>=0.6" "mypy>=1.11"

if [ "$fast" = 1 ]; then
  # The dev profile shares its compiled dependencies with `cargo test --lib`. A
  # real wheel, not `maturin develop`: an editable install's path .pth would
  # take the name of the wheel's own wool_docker.pth, and the seed hook with it.
  out=target/fast-wheel
  rm -rf "$out"
  maturin build --profile dev --strip --compatibility linux -o "$out" >/dev/null
  wheel=$(ls "$out"/wool_docker-*.whl)
  # No --force-reinstall of the dependencies: only our own package changed.
  python -m pip install -q --no-deps --force-reinstall "$wheel"
  python -m pip install -q "$wheel"
  echo "installed $wheel" >&2
  exit 0
fi

rm -f dist/wool_docker-*.whl
maturin build --release --strip --zig --compatibility manylinux2014 -o dist >/dev/null
wheel=$(ls dist/wool_docker-*.whl)
python scripts/check-wheel.py "$wheel"
python -m pip install -q --force-reinstall "$wheel"
echo "installed $wheel" >&2

if [ "$want_image" = 1 ]; then
  bash scripts/base-image.sh
  base="wool-docker-base:bookworm"
  tag="${WOOL_DOCKER_IMAGE:-wool-docker-worker:dev}"
  # The wheel and the base it is built on: a rebuilt base rebuilds the image.
  digest=$( (sha256sum "$wheel"; docker image inspect -f '{{.Id}}' "$base") | sha256sum | cut -c1-16)
  if [ "$(docker image inspect -f '{{index .Config.Labels "wool.docker.wheel"}}' "$tag" 2>/dev/null)" = "$digest" ]; then
    echo "worker image $tag is up to date" >&2
  else
    wool-docker image build --tag "$tag" --base "$base" --wool-docker-wheel "$wheel" \
      --label "wool.docker.wheel=$digest" >&2
  fi
fi
