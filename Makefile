# arrowlog: `make demo` and `make test` set everything up on a fresh machine.
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
PIP    := $(VENV)/bin/pip
STAMP  := $(VENV)/.deps-stamp
NATIVE := $(wildcard _native/*.pyx _native/*.pxi _native/*/*.pxi _native/include/*.h src/arrowlog/_native/*.pxd)
BUILT  := $(VENV)/.build-stamp
APT_PACKAGES := kcat librdkafka-dev redis-server nats-server chromium chromium-driver golang-go golang-github-shopify-sarama-dev

.PHONY: all venv build demo test test-quick bench bench-micro lint clean system-deps

all: build

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -q --upgrade pip setuptools wheel "Cython>=3.1"
	$(PIP) install -q -e ".[test,bench]" --no-build-isolation
	touch $(STAMP)

venv: $(STAMP)

$(BUILT): $(STAMP) $(NATIVE) setup.py
	$(PY) setup.py -q build_ext --inplace
	touch $(BUILT)

build: $(BUILT)

# Debian packages the interop tests and the benchmark need (kcat, redis,
# nats, librdkafka-dev for bench/rdkafka_probe.c; chromium and chromium-driver
# for the console's browser tests).
# Installed only when missing; needs root, as on CI and dev machines.
system-deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
		echo "installing Debian packages:$$missing"; \
		if [ "$$(id -u)" = 0 ]; then SUDO=""; else SUDO="sudo"; fi; \
		$$SUDO apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$SUDO apt-get install -y -qq $$missing >/dev/null; \
	fi

demo: build
	$(PY) -m arrowlog demo

test: build system-deps
	$(PY) -m pytest tests -q -p no:cacheprovider

bench: build system-deps
	$(PY) -m bench

bench-micro: build
	$(PY) -m pytest bench/micro -q --benchmark-only

lint: build
	$(VENV)/bin/ruff check src tests bench
	$(VENV)/bin/cython-lint _native src/arrowlog/_native/*.pxd
	$(PY) -m mypy --config-file pyproject.toml

clean:
	rm -rf build $(BUILT) src/arrowlog/_native/*.so _native/*.c
