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
                wireguard-go wireguard-tools openvpn shadowsocks-libev
# Only the report's render test needs it; where it cannot be installed (e.g. a
# snap-only chromium on Ubuntu) that test skips and says why.
APT_OPTIONAL := chromium
APT_STAMP := $(VENV)/.apt-$(shell echo $(APT_PACKAGES) $(APT_OPTIONAL) | md5sum | cut -c1-8)
PIP_STAMP := $(VENV)/.pip-installed
# The userspace link-impairment data path (NFQUEUE), in C for speed; raw
# nfnetlink, so it needs only libc and the kernel headers.
IMPAIRD := $(VENV)/bin/callwall-impaird
IMPAIRD_SOURCES := $(wildcard harness/link/impaird/*.c harness/link/impaird/*.h)
BUILT := $(PIP_STAMP) $(IMPAIRD)
PYTEST_FLAGS ?=
# `make scenarios JOBS=4` runs four labs at once (pytest-xdist), one per worker;
# `make scenarios MATRIX=quick` runs scenarios/quick.yaml instead of matrix.yaml.
JOBS ?= 1
MATRIX ?= $(or $(CALLWALL_MATRIX),matrix)
SCENARIO_JOBS := $(if $(filter-out 1,$(JOBS)),-n $(JOBS),)

.PHONY: all scenarios test unit integration calibrate bench lint install system-packages clean help image check

all: help

help:
	@echo "make scenarios   run the policy x profile x strategy call matrix, write results/<run>/"
	@echo "                 (MATRIX=quick for a short tour, JOBS=N for N labs at once)"
	@echo "make test        lint, then the whole test suite (unit and root integration)"
	@echo "make unit        the tests that need no root"
	@echo "make check       lint, then the unit tests: no root (after make install)"
	@echo "make calibrate   the full calibration suite (censor and links, real traffic)"
	@echo "make bench       benchmarks: print capacity and load figures"
	@echo "make lint        ruff, mypy (harness/ and tests/) and the import-linter layer contracts"
	@echo "make install     system packages and the venv only"
	@echo "make image       the testbed in a container image (callwall:latest; see the README)"

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

scenarios: $(BUILT)
	$(SUDO) env CALLWALL_MATRIX=$(MATRIX) $(PY) -m pytest scenarios -v -p no:cacheprovider $(SCENARIO_JOBS) $(PYTEST_FLAGS)

test: lint $(IMPAIRD)
	$(SUDO) $(PY) -m pytest tests -q -rs -p no:cacheprovider $(PYTEST_FLAGS)

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
