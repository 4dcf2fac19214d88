# callwall, the testbed, in a container: `make image` builds it (see the README,
# "Running in a container"), then, with no network needed:
#
#   docker run --rm --privileged --network none callwall make scenarios MATRIX=quick
#
# Needs BuildKit (secrets and cache mounts). The base is any Debian 12 image:
# by default callwall-base:bookworm, which `make image` imports from a
# debootstrap --variant=minbase tarball (docker/build-base.sh), so that no
# registry is needed; `make image BASE_IMAGE=debian:bookworm` takes Docker Hub's.
# Build with `--network host` where the engine has no bridge network.
# Layers, from the least to the most often changed: the Makefile's Debian
# packages, the Python dependencies of pyproject.toml, then the repository.
ARG BASE_IMAGE=callwall-base:bookworm

FROM ${BASE_IMAGE} AS base
ENV DEBIAN_FRONTEND=noninteractive LANG=C.UTF-8
RUN command -v make >/dev/null \
 || { apt-get update -qq && apt-get install -y -qq --no-install-recommends make ca-certificates \
      && rm -rf /var/lib/apt/lists/*; }

# The Makefile's package list alone: edits elsewhere in the Makefile keep the
# (slow) package layer below cached, since this file's content is what counts.
FROM base AS apt-list
COPY Makefile /tmp/Makefile
RUN make -s -f /tmp/Makefile --eval 'print-apt: ; @echo $(APT_PACKAGES)' print-apt \
      | tr ' ' '\n' | sed '/^$/d' > /tmp/apt-packages

FROM base AS system
# APT_OPTIONAL: the Makefile's optional packages (chromium, for the report's
# render test only) are left out unless asked for: --build-arg APT_OPTIONAL=chromium
ARG APT_OPTIONAL=
COPY --from=apt-list /tmp/apt-packages /tmp/apt-packages
RUN echo $APT_OPTIONAL | tr ' ' '\n' | sed '/^$/d' >> /tmp/apt-packages \
 && apt-get update -qq \
 && xargs -a /tmp/apt-packages apt-get install -y -qq --no-install-recommends \
 && rm -rf /var/lib/apt/lists/* /var/cache/apt/archives/*.deb /tmp/apt-packages

# The venv and pyproject.toml's dependencies (with every extra: `make install`
# installs the dev and test ones), before the repository is copied.
# Secret `pipcert`: a CA bundle for pip where TLS goes through a local CA; it
# never reaches a layer.
FROM system AS deps
WORKDIR /opt/callwall
COPY pyproject.toml ./
RUN --mount=type=secret,id=pipcert --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && python3 -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
      print("\n".join(p["dependencies"] + sum(p.get("optional-dependencies", {}).values(), [])))' \
      > /tmp/requirements.txt \
 && python3 -m venv --system-site-packages .venv \
 && .venv/bin/pip install -q --upgrade pip \
 && .venv/bin/pip install -q -r /tmp/requirements.txt \
 && rm /tmp/requirements.txt

FROM deps AS callwall
ARG APT_OPTIONAL=
# The checkout's version (setuptools-scm, e.g. 0.1.1.dev31+g615dd6454): the
# context has no .git, so `make image` passes it; results.json records it.
ARG CALLWALL_VERSION=
COPY . .
# `make install` as a user runs it: the venv is there, so this installs callwall
# itself and builds callwall-impaird. Then the default package set's stamp is
# dated like the one just made, so that `make scenarios` here finds everything
# installed (as on a machine where the optional package cannot be installed)
# and needs no network.
RUN --mount=type=secret,id=pipcert --mount=type=cache,target=/root/.cache/pip \
    if [ -s /run/secrets/pipcert ]; then export PIP_CERT=/run/secrets/pipcert; fi \
 && if [ -n "$CALLWALL_VERSION" ]; then \
      export SETUPTOOLS_SCM_PRETEND_VERSION_FOR_CALLWALL="$CALLWALL_VERSION"; fi \
 && make install APT_OPTIONAL="$APT_OPTIONAL" \
 && stamp() { make -s --eval 'print-stamp: ; @echo $(APT_STAMP)' print-stamp "$@"; } \
 && built=$(stamp APT_OPTIONAL="$APT_OPTIONAL") && default=$(stamp) \
 && { [ "$built" = "$default" ] || touch -r "$built" "$default"; } \
 && make -q install \
 && rm -rf /var/lib/apt/lists/*
ENV PATH=/opt/callwall/.venv/bin:$PATH
CMD ["bash"]
