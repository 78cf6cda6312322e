#!/usr/bin/env bash
# Make a Python base image without pulling from a registry: Debian bookworm by debootstrap,
# imported into the local Engine. Bookworm's python3 is 3.11, the host's minor version, which
# wool needs because cloudpickle ships functions by value between host and container.
# Cached: an existing image of that name is kept unless --force is given.
set -euo pipefail

name="wool-docker-base:bookworm"
force=0
mirror="${DEBIAN_MIRROR:-http://deb.debian.org/debian}"
while [ $# -gt 0 ]; do
  case "$1" in
    --force) force=1 ;;
    --mirror) mirror="$2"; shift ;;
    -h|--help) echo "usage: $0 [--force] [--mirror URL] [IMAGE_NAME]"; exit 0 ;;
    *) name="$1" ;;
  esac
  shift
done

# Images from before the root directory was made traversable (mode 0700 from
# mktemp: an unprivileged USER cannot reach anything on a vfs Engine) are rebuilt.
revision=2
if [ "$force" = 0 ] && [ "$(docker image inspect -f '{{index .Config.Labels "wool.docker.base.revision"}}' "$name" 2>/dev/null)" = "$revision" ]; then
  echo "base image $name already present"
  exit 0
fi

if ! command -v debootstrap >/dev/null 2>&1; then
  echo "installing debootstrap" >&2
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null
fi

root=$(mktemp -d /var/tmp/wool-docker-rootfs.XXXXXX)
trap 'rm -rf "$root"' EXIT
echo "debootstrapping bookworm into $root (about 80 s)" >&2
debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
  bookworm "$root" "$mirror" >/dev/null
# Keep the image small: package lists and caches are not needed at run time.
rm -rf "$root"/var/cache/apt/archives/*.deb "$root"/var/lib/apt/lists/*
# mktemp made the root 0700; the worker image runs as an unprivileged user.
chmod 0755 "$root"
py=$(chroot "$root" python3 -c 'import sys; print("%d.%d" % sys.version_info[:2])')
tar -C "$root" -c . | docker import \
  --change 'ENV LANG=C.UTF-8' \
  --change "LABEL wool.docker.base=bookworm wool.docker.python=$py wool.docker.base.revision=$revision" \
  --change 'CMD ["python3"]' \
  - "$name" >/dev/null
echo "built base image $name (python $py)"
