#!/usr/bin/env bash
# make image-build: the Dockerfile built with buildah (no Docker engine needed), on a base made
# with debootstrap: Debian bookworm with Python 3.11 (the official python:3.11-slim-bookworm is
# the default base when a registry is reachable: `make image`). Needs root and Debian packages
# buildah, debootstrap, podman and runc (installed here when missing).
set -euo pipefail
IMAGE=${QM_IMAGE:-localhost/qm-ingest:dev}
BASE=${QM_BASE_IMAGE:-localhost/qm-base:bookworm}
MIRROR=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
export STORAGE_DRIVER=${STORAGE_DRIVER:-vfs} BUILDAH_ISOLATION=${BUILDAH_ISOLATION:-chroot}
work=$(mktemp -d /tmp/qm-image-XXXXXX)
trap 'rm -rf "$work"' EXIT

missing=()
for tool in buildah debootstrap podman runc; do command -v "$tool" >/dev/null || missing+=("$tool"); done
if [ ${#missing[@]} -gt 0 ]; then
  apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

if ! buildah inspect --type image "$BASE" >/dev/null 2>&1; then
  debootstrap --variant=minbase --include=python3,python3-venv,python-is-python3,ca-certificates \
    bookworm "$work/rootfs" "$MIRROR"
  # The site's own certificate authorities (a TLS-inspecting proxy's, say): pip inside the
  # build reaches PyPI through the same network as this machine.
  if compgen -G "/usr/local/share/ca-certificates/*.crt" >/dev/null; then
    cp /usr/local/share/ca-certificates/*.crt "$work/rootfs/usr/local/share/ca-certificates/"
    chroot "$work/rootfs" update-ca-certificates >/dev/null
  fi
  rm -rf "$work/rootfs/var/cache/apt/archives/"*.deb "$work/rootfs/var/lib/apt/lists/"*
  tar -C "$work/rootfs" -cf "$work/base.tar" .
  container=$(buildah from scratch)
  buildah add "$container" "$work/base.tar" / >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin --cmd python3 "$container"
  buildah commit -q --rm "$container" "$BASE" >/dev/null
fi
buildah bud --isolation chroot --build-arg PYTHON_IMAGE="$BASE" -t "$IMAGE" -f Dockerfile .
echo "built $IMAGE on $BASE"
