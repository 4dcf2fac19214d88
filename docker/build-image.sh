#!/usr/bin/env bash
# `make image`: build the callwall image (default callwall:latest) from the
# repository's Dockerfile, with no registry needed: the base image
# callwall-base:bookworm is imported from a cached debootstrap tarball when it
# is missing (docker/build-base.sh). Run as root.
#
# env: IMAGE                     the tag to build (default callwall:latest)
#      BASE_IMAGE                another Debian 12 base, e.g. debian:bookworm (then no debootstrap)
#      IMAGE_APT_OPTIONAL        the Makefile's optional Debian packages to add (chromium)
#      CALLWALL_PRIVATE_DOCKERD=1  when no engine answers at $DOCKER_HOST (or the default
#                                socket), build with a private dockerd (harness/containers/engine.py)
#      DOCKER                    the docker client to use (default: the first on PATH that
#                                can use BuildKit)
#      PIP_CERT                  a CA bundle pip needs (where TLS goes through a local CA),
#                                given to the build as a secret, never stored in the image
set -euo pipefail

repo=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$repo"
image=${IMAGE:-callwall:latest}
base=${BASE_IMAGE:-callwall-base:bookworm}

is_on() { case "${1,,}" in 1|true|yes) return 0;; *) return 1;; esac; }

if [ "${1:-}" != --in-engine ]; then
  # What this needs (docker.io, and debootstrap unless BASE_IMAGE is given),
  # installed without starting the system's docker.
  if is_on "${CALLWALL_PRIVATE_DOCKERD:-}" || ! command -v docker >/dev/null \
     || { [ -z "${BASE_IMAGE:-}" ] && ! command -v debootstrap >/dev/null; }; then
    docker/install-engine.sh
  fi
  python=.venv/bin/python
  [ -x "$python" ] || python=python3
  # The engine module finds an engine (or starts, then stops, a private one)
  # and runs the build with DOCKER_HOST set.
  exec "$python" -m harness.containers.engine run -- "$0" --in-engine
fi

# A client that can use BuildKit: one with the buildx plugin, or one older than
# 23.0 (BuildKit built in, e.g. Debian 12's docker.io).
pick_client() {
  local candidate major
  for candidate in ${DOCKER:-} $(type -ap docker); do
    if "$candidate" buildx version >/dev/null 2>&1; then
      echo "$candidate"; return 0
    fi
    major=$("$candidate" --version 2>/dev/null | sed -n 's/^Docker version \([0-9]*\)\..*/\1/p')
    if [ -n "$major" ] && [ "$major" -lt 23 ]; then
      echo "$candidate"; return 0
    fi
  done
  return 1
}
if ! docker_cli=$(pick_client); then
  echo "image: no docker client here can use BuildKit: install the buildx plugin" \
       "(docker-buildx-plugin or docker-buildx) or Debian's docker.io" >&2
  exit 1
fi
export DOCKER=$docker_cli

started=$(date +%s)
if [ -z "${BASE_IMAGE:-}" ]; then
  docker/build-base.sh "$base"
fi

build=(--network host --tag "$image" --build-arg "BASE_IMAGE=$base")
[ -n "${IMAGE_APT_OPTIONAL:-}" ] && build+=(--build-arg "APT_OPTIONAL=$IMAGE_APT_OPTIONAL")
[ -n "${PIP_CERT:-}" ] && [ -s "$PIP_CERT" ] && build+=(--secret "id=pipcert,src=$PIP_CERT")
# The context has no .git: the checkout's version goes in as a build argument.
version=""
if [ -e .git ] && [ -x .venv/bin/python ]; then
  version=$(.venv/bin/python -m setuptools_scm 2>/dev/null || true)
fi
[ -n "$version" ] && build+=(--build-arg "CALLWALL_VERSION=$version")
previous=$("$docker_cli" image inspect --format '{{.Id}}' "$image" 2>/dev/null || true)
echo "image: building $image on $base with $docker_cli"
DOCKER_BUILDKIT=1 "$docker_cli" build "${build[@]}" .
# The image this build replaced under the same tag, by its ID; `image rm`
# (no force) keeps it if it has another tag or a container uses it.
current=$("$docker_cli" image inspect --format '{{.Id}}' "$image")
if [ -n "$previous" ] && [ "$previous" != "$current" ]; then
  "$docker_cli" image rm "$previous" >/dev/null 2>&1 || true
fi

size=$("$docker_cli" image inspect --format '{{.Size}}' "$image")
echo "image: $image built in $(( $(date +%s) - started )) s, $(( size / 1000000 )) MB"
