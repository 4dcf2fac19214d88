#!/usr/bin/env bash
# Build the local Debian 12 base image (default callwall-base:bookworm) without
# any registry: debootstrap --variant=minbase into a cached rootfs tarball, then
# `docker import`. Does nothing when the image already exists; reuses the
# tarball when only the image is missing (e.g. a new dockerd data-root).
#
# usage: docker/build-base.sh [TAG]
# env:   DOCKER            docker client (default: docker)
#        CALLWALL_CACHE    cache dir (default ${XDG_CACHE_HOME:-$HOME/.cache}/callwall)
#        DEBIAN_MIRROR, DEBIAN_SECURITY_MIRROR (default deb.debian.org)
#        REBUILD_BASE=1    debootstrap again even if the tarball exists
# Needs root (debootstrap) and a working engine at $DOCKER_HOST or the default socket.
set -euo pipefail

tag=${1:-callwall-base:bookworm}
docker_cli=${DOCKER:-docker}
cache=${CALLWALL_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/callwall}
mirror=${DEBIAN_MIRROR:-http://deb.debian.org/debian}
security_mirror=${DEBIAN_SECURITY_MIRROR:-http://deb.debian.org/debian-security}
suite=bookworm
# make: the Dockerfile reads the Makefile's package list with it.
include=make,ca-certificates
tarball=$cache/base/debian-$suite-minbase.tar

if [ "${REBUILD_BASE:-0}" != 1 ] && "$docker_cli" image inspect "$tag" >/dev/null 2>&1; then
  echo "base image $tag exists"
  exit 0
fi

if [ "${REBUILD_BASE:-0}" = 1 ] || [ ! -s "$tarball" ]; then
  command -v debootstrap >/dev/null || {
    echo "build-base: debootstrap is missing (apt-get install debootstrap)" >&2; exit 1; }
  mkdir -p "$cache/base"
  work=$(mktemp -d "$cache/base/rootfs.XXXXXX")
  trap 'rm -rf -- "$work"' EXIT
  rootfs=$work/rootfs
  echo "build-base: debootstrap --variant=minbase $suite (log: $cache/base/debootstrap.log)"
  if ! debootstrap --variant=minbase --include="$include" "$suite" "$rootfs" "$mirror" \
       >"$cache/base/debootstrap.log" 2>&1; then
    echo "build-base: debootstrap failed; last lines of its log:" >&2
    tail -n 20 "$cache/base/debootstrap.log" >&2
    exit 1
  fi
  # What the official debian:bookworm image has: the release, its updates and
  # the security archive, in deb822 form.
  rm -f "$rootfs/etc/apt/sources.list"
  cat >"$rootfs/etc/apt/sources.list.d/debian.sources" <<EOF
Types: deb
URIs: $mirror
Suites: $suite $suite-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb
URIs: $security_mirror
Suites: $suite-security
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
EOF
  # Containers start no services, and images keep no package caches.
  printf '#!/bin/sh\nexit 101\n' >"$rootfs/usr/sbin/policy-rc.d"
  chmod 755 "$rootfs/usr/sbin/policy-rc.d"
  rm -rf "$rootfs"/var/cache/apt/archives/*.deb "$rootfs"/var/lib/apt/lists/* \
         "$rootfs"/var/log/*.log "$rootfs"/debootstrap
  tar --numeric-owner -C "$rootfs" -cf "$work/rootfs.tar" .
  mv -f "$work/rootfs.tar" "$tarball"
  echo "build-base: cached $tarball ($(du -h "$tarball" | cut -f1))"
fi

"$docker_cli" import \
  -c 'CMD ["/bin/bash"]' \
  -c 'ENV LANG=C.UTF-8 PATH=/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin' \
  "$tarball" "$tag" >/dev/null
echo "build-base: imported $tarball as $tag"
