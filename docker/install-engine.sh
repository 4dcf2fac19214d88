#!/usr/bin/env bash
# Install what callwall's containers need (Debian packages docker.io for
# dockerd and the docker client, debootstrap for the local base image)
# without starting the system's docker, which would add its bridge and
# firewall rules to the root namespace: the units are masked for the install
# under systemd; elsewhere a policy-rc.d that forbids starting services is
# put in place for the install (or an existing one is relied on). callwall
# runs its own dockerd (harness/containers/engine.py).
#
# usage: docker/install-engine.sh [--optional]   (as root)
#   --optional: say why and exit 0 when it cannot install (make install)
set -euo pipefail

optional=0
[ "${1:-}" = --optional ] && optional=1
give_up() {
  echo "containers: $*" >&2
  if [ $optional = 1 ]; then
    echo "containers: container lab hosts and image endpoints will be skipped, naming why" >&2
    exit 0
  fi
  exit 1
}

missing=()
command -v dockerd >/dev/null || missing+=(docker.io)
command -v debootstrap >/dev/null || missing+=(debootstrap)
[ ${#missing[@]} -eq 0 ] && exit 0
[ "$(id -u)" = 0 ] || give_up "please install ${missing[*]} (as root: apt-get install ${missing[*]})"

units=(docker.service docker.socket containerd.service)
if [ -d /run/systemd/system ]; then
  systemctl mask --runtime --quiet "${units[@]}"
  trap 'systemctl unmask --runtime --quiet "${units[@]}"' EXIT
elif [ ! -e /usr/sbin/policy-rc.d ]; then
  # No systemd (a container, say): Debian's policy layer keeps the packages'
  # init scripts from starting anything while they install (exit 101:
  # "action forbidden"); the file is ours only for the install.
  printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
  chmod 755 /usr/sbin/policy-rc.d
  trap 'rm -f /usr/sbin/policy-rc.d' EXIT
elif [ ! -x /usr/sbin/policy-rc.d ]; then
  give_up "not installing ${missing[*]}: /usr/sbin/policy-rc.d exists but is not executable," \
          "so nothing keeps its service from starting (install it yourself, service disabled)"
fi
echo "containers: installing ${missing[*]}"
if ! { DEBIAN_FRONTEND=noninteractive apt-get update -qq \
       && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
            "${missing[@]}"; }; then
  give_up "apt-get could not install ${missing[*]}"
fi
