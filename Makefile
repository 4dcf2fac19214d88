# callwall: `make scenarios` runs the default matrix, `make test` the test suite.
# Both install what they need first: Debian/Ubuntu packages, then a venv
# (with system site-packages, for Debian's Mininet) holding callwall itself.

SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
SYSTEM_PYTHON ?= /usr/bin/python3
APT_PACKAGES := mininet coturn nftables iptables iproute2 util-linux procps iputils-ping \
                tcpdump stun-client iperf3 espeak-ng python3-venv python3-pip python3-dev gcc \
                ethtool \
                libc6-dev linux-libc-dev \
                wireguard-go wireguard-tools openvpn shadowsocks-libev \
                dnsmasq-base \
                baresip-core kamailio \
                v2ray
# The report's render test and the browser call profiles (browser,
# browser-aiortc) need it; where it cannot be installed (e.g. a snap-only
# chromium on Ubuntu) those tests and matrix cells skip and say why.
APT_OPTIONAL := chromium
APT_STAMP := $(VENV)/.apt-$(shell echo $(APT_PACKAGES) $(APT_OPTIONAL) | md5sum | cut -c1-8)
PIP_STAMP := $(VENV)/.pip-installed
# The userspace link-impairment data path (NFQUEUE), in C for speed; raw
# nfnetlink, so it needs only libc and the kernel headers.
IMPAIRD := $(VENV)/bin/callwall-impaird
IMPAIRD_SOURCES := $(wildcard harness/link/impaird/*.c harness/link/impaird/*.h)
# Container lab hosts and image endpoints (endpoints/) need dockerd and
# debootstrap: installed without starting the system's docker, or skipped
# with a reason where that cannot be done (docker/install-engine.sh).
CONTAINERS_STAMP := $(VENV)/.containers-installed
BUILT := $(PIP_STAMP) $(IMPAIRD) $(CONTAINERS_STAMP)
PYTEST_FLAGS ?=
# `make scenarios JOBS=4` runs four labs at once (pytest-xdist), one per worker;
# `make scenarios` runs scenarios/quick.yaml, a few minutes' tour;
# `make scenarios MATRIX=matrix` the full matrix (every policy, every client).
JOBS ?= 1
MATRIX ?= $(or $(CALLWALL_MATRIX),quick)
# `make scenarios SHARD=2/4` runs the second of four duration-balanced parts of
# the matrix (scenarios/matrix_file.py); `callwall report --merge` joins them.
SHARD ?= $(CALLWALL_SHARD)
SCENARIO_JOBS := $(if $(filter-out 1,$(JOBS)),-n $(JOBS),)

.PHONY: all scenarios test unit integration calibrate bench lint install system-packages clean help image check demo endpoint-images

all: help

help:
	@echo "make scenarios   the timeline tour (scenarios/quick.yaml), write results/<run>/"
	@echo "                 (MATRIX=matrix for the full matrix, JOBS=N for N labs at once,"
	@echo "                 SHARD=k/N for part k of N, for N machines; see the README)"
	@echo "make demo        a class demo: one call, the censor changes under it; a live page"
	@echo "                 (DEMO=telegram-2025 for another script, DEMO_ARGS='--speed 2 --no-browser')"
	@echo "make test        lint, then the whole test suite (unit and root integration)"
	@echo "make unit        the tests that need no root"
	@echo "make check       lint, then the unit tests: no root (after make install)"
	@echo "make calibrate   the full calibration suite (censor and links, real traffic)"
	@echo "make bench       benchmarks: print capacity and load figures"
	@echo "make lint        ruff, mypy (harness/ and tests/) and the import-linter layer contracts"
	@echo "make install     system packages and the venv only"
	@echo "make image       the testbed in a container image (callwall:latest; see the README)"
	@echo "make endpoint-images  build the images of the endpoint descriptors (endpoints/)"

install: $(BUILT)

system-packages: $(APT_STAMP)

$(APT_STAMP):
	@missing=$$(for p in $(APT_PACKAGES) $(APT_OPTIONAL); do \
	    dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q "install ok installed" || echo $$p; \
	  done); \
	if [ -n "$$missing" ]; then \
	  echo "installing system packages:" $$missing; \
	  required=$$(for p in $$missing; do case " $(APT_OPTIONAL) " in *" $$p "*) ;; *) echo $$p;; esac; done); \
	  optional=$$(for p in $$missing; do case " $(APT_OPTIONAL) " in *" $$p "*) echo $$p;; esac; done); \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -qq || exit 1; \
	  if [ -n "$$required" ]; then \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$required || exit 1; \
	  fi; \
	  for p in $$optional; do \
	    $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends $$p \
	      || echo "optional package $$p not installed: the tests that need it will skip"; \
	  done; \
	  if echo " $$missing " | grep -q " coturn " && [ -d /run/systemd/system ]; then \
	    echo "callwall runs its own relays inside labs: disabling the coturn system service"; \
	    $(SUDO) systemctl disable --now coturn >/dev/null 2>&1 || true; \
	  fi; \
	  if echo " $$missing " | grep -q " v2ray " && [ -d /run/systemd/system ]; then \
	    echo "callwall runs v2ray inside labs (endpoints/v2ray-vmess): disabling its system service"; \
	    $(SUDO) systemctl disable --now v2ray >/dev/null 2>&1 || true; \
	  fi; \
	  if echo " $$missing " | grep -q " kamailio " && [ -d /run/systemd/system ]; then \
	    echo "callwall runs its own SIP proxy inside labs: disabling the kamailio system service"; \
	    $(SUDO) systemctl disable --now kamailio >/dev/null 2>&1 || true; \
	  fi; \
	fi
	@mkdir -p $(VENV) && touch $@

$(PY): | $(APT_STAMP)
	$(SYSTEM_PYTHON) -m venv --system-site-packages $(VENV)

$(PIP_STAMP): pyproject.toml $(APT_STAMP) | $(PY)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev,test]'
	touch $@

$(IMPAIRD): $(IMPAIRD_SOURCES) $(APT_STAMP) | $(PY)
	gcc -O2 -Wall -Wextra -Werror -o $@ $(filter %.c,$^) -lm

$(CONTAINERS_STAMP): docker/install-engine.sh | $(APT_STAMP) $(PY)
	$(SUDO) docker/install-engine.sh --optional
	touch $@

# The images of the endpoint descriptors (endpoints/*/endpoint.yaml with
# build:), on the local Debian base; cached, so only what changed is built.
endpoint-images: $(BUILT)
	$(SUDO) $(PY) -m harness.containers.images

# A scripted demonstration for a class (scenarios/demos/); prints the live page's URL.
DEMO ?=
DEMO_ARGS ?=
demo: $(BUILT)
	$(SUDO) $(VENV)/bin/callwall demo $(DEMO) $(DEMO_ARGS)

scenarios: $(BUILT)
	$(SUDO) env CALLWALL_MATRIX=$(MATRIX) CALLWALL_SHARD='$(SHARD)' $(PY) -m pytest scenarios -v -p no:cacheprovider $(SCENARIO_JOBS) $(PYTEST_FLAGS)

# The unit tests (no lab, no timing) on every core; then the root tests one
# lab at a time, with the slowest listed so that a slow run says where it went.
# Exit status 5 is pytest's "no test selected" (a PYTEST_FLAGS -k that picks
# tests of one half only); any other failure stops make.
test: lint $(IMPAIRD) $(CONTAINERS_STAMP)
	$(SUDO) $(PY) -m pytest tests/unit -q -rs -p no:cacheprovider -n auto $(PYTEST_FLAGS) \
	  || [ $$? = 5 ]
	$(SUDO) $(PY) -m pytest tests --ignore=tests/unit -q -rs -p no:cacheprovider \
	  --durations=25 $(PYTEST_FLAGS) || [ $$? = 5 ]

unit: $(BUILT)
	$(PY) -m pytest tests/unit -q -p no:cacheprovider $(PYTEST_FLAGS)

integration: $(BUILT)
	$(SUDO) $(PY) -m pytest tests/integration -q -rs -p no:cacheprovider $(PYTEST_FLAGS)

calibrate: $(BUILT)
	$(SUDO) env CALLWALL_CALIBRATE=full $(PY) -m pytest tests/calibration -v -rs -p no:cacheprovider $(PYTEST_FLAGS)

bench: $(BUILT)
	$(SUDO) $(PY) -m bench.run $(BENCH)

lint: $(PIP_STAMP)
	$(VENV)/bin/ruff check harness tests scenarios bench setup.py
	$(VENV)/bin/mypy harness tests
	$(VENV)/bin/lint-imports --no-cache

# What to run before sending a change; nothing in it needs root (`make install`
# needs it once, for the system packages).
check: lint
	$(PY) -m pytest tests/unit -q -p no:cacheprovider -n auto $(PYTEST_FLAGS)

# callwall:latest from the Dockerfile; no registry needed (docker/build-image.sh).
image:
	$(SUDO) env $(foreach v,IMAGE BASE_IMAGE IMAGE_APT_OPTIONAL DOCKER DOCKER_HOST \
	  CALLWALL_PRIVATE_DOCKERD PIP_CERT,$(if $($(v)),$(v)='$($(v))')) docker/build-image.sh

clean:
	rm -rf $(VENV) *.egg-info .mypy_cache .ruff_cache .import_linter_cache build dist
