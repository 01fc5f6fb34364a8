#!/usr/bin/env bash
# `make image`: build deploy/ecs/Dockerfile with docker when a daemon answers, else with buildah.
#
# Without a daemon (a CI box, or a machine with no image registry in reach) buildah builds on a
# Debian bookworm base made here with debootstrap and kept in buildah's storage, so it is made
# once. BASE_IMAGE=... builds on another base instead (the Dockerfile's default is the pinned
# official python:3.11-slim-bookworm).
#
# Environment: IMAGE (name:tag to build), BASE_IMAGE, CA_BUNDLE (a CA bundle the build's
# downloads must trust, e.g. behind a TLS-inspecting proxy; defaults to PIP_CERT when set),
# BUILD_CACHE (scratch space outside the repo, default /var/tmp/mediamill-build).
set -euo pipefail

cd "$(dirname "$0")/../.."
DOCKERFILE=deploy/ecs/Dockerfile
VERSION=$(sed -n 's/^version = "\(.*\)"$/\1/p' pyproject.toml | head -n1)
IMAGE=${IMAGE:-mediamill-worker:${VERSION}}  # buildah stores it as localhost/mediamill-worker
LOCAL_BASE=localhost/mediamill-base:bookworm
BUILD_CACHE=${BUILD_CACHE:-/var/tmp/mediamill-build}
CA_BUNDLE=${CA_BUNDLE:-${PIP_CERT:-}}
REVISION=$(git rev-parse HEAD 2>/dev/null || echo unknown)
if [ -n "$(git status --porcelain --untracked-files=no 2>/dev/null)" ]; then
  REVISION="${REVISION}-dirty"
fi
SOURCE_URL=${SOURCE_URL:-$(git remote get-url origin 2>/dev/null || echo unknown)}

say() { printf 'make image: %s\n' "$*" >&2; }

build_args=(
  --build-arg "VERSION=${VERSION}"
  --build-arg "REVISION=${REVISION}"
  --build-arg "SOURCE_URL=${SOURCE_URL}"
)
if [ -n "$CA_BUNDLE" ]; then
  [ -r "$CA_BUNDLE" ] || { say "CA_BUNDLE=$CA_BUNDLE is not a readable file"; exit 2; }
  build_args+=(--secret "id=ca_bundle,src=${CA_BUNDLE}")
fi

# A minimal bookworm with Debian's python3 (3.11), committed once as $LOCAL_BASE.
make_local_base() {
  if buildah inspect --type image "$LOCAL_BASE" >/dev/null 2>&1; then
    return
  fi
  command -v debootstrap >/dev/null || { say "debootstrap is missing (apt-get install debootstrap)"; exit 2; }
  local rootfs="${BUILD_CACHE}/base-rootfs"
  rm -rf "$rootfs"
  mkdir -p "$rootfs"
  say "making the bookworm base with debootstrap in $rootfs (once; kept as $LOCAL_BASE)"
  # python3-venv: the builder stage makes the worker's virtualenv with `python3 -m venv`.
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates \
    bookworm "$rootfs" ${DEBOOTSTRAP_MIRROR:+"$DEBOOTSTRAP_MIRROR"} >&2
  chroot "$rootfs" apt-get clean
  rm -rf "$rootfs"/var/lib/apt/lists/* "$rootfs"/var/log/* "$rootfs"/usr/share/doc/* \
    "$rootfs"/usr/share/man/* "$rootfs"/var/cache/debconf/*-old
  local ctr mnt
  ctr=$(buildah from scratch)
  mnt=$(buildah mount "$ctr")
  tar -C "$rootfs" --numeric-owner --exclude=./dev/* --exclude=./proc/* --exclude=./sys/* -cf - . \
    | tar -C "$mnt" --numeric-owner -xpf -
  buildah umount "$ctr" >/dev/null
  buildah config --env PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin \
    --env LANG=C.UTF-8 --cmd '["python3"]' \
    --label org.opencontainers.image.description="Debian bookworm minbase with python3, made by debootstrap for mediamill's local image builds" \
    "$ctr"
  buildah commit --quiet --rm --format docker "$ctr" "$LOCAL_BASE" >/dev/null
  rm -rf "$rootfs"
}

if [ "${1:-}" = base ]; then  # only make (or find) the local base
  make_local_base
  echo "$LOCAL_BASE"
  exit 0
fi

if command -v docker >/dev/null && docker info >/dev/null 2>&1; then
  [ -n "${BASE_IMAGE:-}" ] && build_args+=(--build-arg "BASE_IMAGE=${BASE_IMAGE}")
  say "building $IMAGE with docker"
  DOCKER_BUILDKIT=1 docker build -f "$DOCKERFILE" "${build_args[@]}" -t "$IMAGE" .
elif command -v buildah >/dev/null; then
  if [ -z "${BASE_IMAGE:-}" ]; then
    make_local_base
    BASE_IMAGE=$LOCAL_BASE
  fi
  say "building $IMAGE with buildah on $BASE_IMAGE"
  # chroot isolation: no container runtime needed; docker format: OCI drops HEALTHCHECK.
  buildah bud --isolation chroot --format docker --layers \
    -f "$DOCKERFILE" --build-arg "BASE_IMAGE=${BASE_IMAGE}" "${build_args[@]}" -t "$IMAGE" .
else
  say "needs a docker daemon or buildah (apt-get install buildah)"
  exit 2
fi
say "built $IMAGE"
