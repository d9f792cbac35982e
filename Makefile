# Two commands for a new user: `make demo` and `make test`. Everything they need is installed by
# `make setup`, which only installs what is missing (a second run does nothing).

SHELL := /bin/bash
.DEFAULT_GOAL := help

APT_PACKAGES := libhdf5-dev hdf5-tools libclang-dev pkg-config valgrind chromium
VENV := .venv
VENV_STAMP := $(VENV)/.installed
PHOTON_DAQ_STAMP := $(VENV)/.photon_daq
PYTHON ?= python3
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
CARGO ?= cargo

.PHONY: help setup system-packages demo test lint unit-tests no-std-check loom-check shim-memcheck \
	shim-vendor-check interop interop-long bench

help:
	@echo "make setup   install missing system packages and the Python reference tools (.venv)"
	@echo "make demo    setup, release build, run the demo into ./demo-out/"
	@echo "make test    setup, fmt, clippy -D warnings, cargo tests, no_std, loom and valgrind checks, interop tests"
	@echo "make bench   criterion benches and comparison scripts (figures for docs/benchmarks.md)"
	@echo "make interop-long  the interop tests at full size: every key side by side, the long corruption fuzz"

setup: system-packages $(VENV_STAMP) $(PHOTON_DAQ_STAMP)

# dpkg is asked first, so `apt-get update` only runs when something is missing.
system-packages:
	@missing=""; \
	for p in $(APT_PACKAGES); do \
	  dpkg-query -W -f='$${Status}' $$p 2>/dev/null | grep -q 'install ok installed' || missing="$$missing $$p"; \
	done; \
	if [ -n "$$missing" ]; then \
	  echo "setup: installing Debian packages:$$missing"; \
	  $(SUDO) apt-get update -qq && DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq $$missing; \
	fi

$(VENV_STAMP): tests/interop/requirements.txt tango-device/pyproject.toml
	@[ -x $(VENV)/bin/python ] || $(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --disable-pip-version-check -r tests/interop/requirements.txt
	$(VENV)/bin/pip install -q --disable-pip-version-check -e tango-device
	@touch $@

# The Python package photon_daq (host-tools/photon-daq-py), release build, installed editable.
# It depends on several host-tools crates: any of their sources (or the lock file) rebuilds it.
$(PHOTON_DAQ_STAMP): $(VENV_STAMP) Cargo.lock $(shell find host-tools acq-core sdk-shim \
	  \( -name '*.rs' -o -name '*.py' -o -name Cargo.toml \) -not -path '*/target/*' 2>/dev/null)
	cd host-tools/photon-daq-py && VIRTUAL_ENV=$(abspath $(VENV)) PATH=$(abspath $(VENV))/bin:$$PATH \
	  maturin develop --release -q
	@touch $@

demo: setup
	$(CARGO) build --release --workspace --bins
	@./scripts/demo.sh

test: setup lint unit-tests no-std-check loom-check shim-memcheck shim-vendor-check interop

lint:
	$(CARGO) fmt --all --check
	$(CARGO) clippy --workspace --all-targets -- -D warnings

unit-tests:
	$(CARGO) test --workspace

# acq-core must build into a #![no_std] staticlib with panic=abort and no global allocator (any
# use of std or alloc in it or its dependencies fails that build); a C program then runs it.
NO_STD_DIR := target/no-std-check
no-std-check:
	$(CARGO) build --release --manifest-path acq-core/no-std-check/Cargo.toml --target-dir $(NO_STD_DIR)
	cc -o $(NO_STD_DIR)/selftest acq-core/no-std-check/src/main.c \
	  $(NO_STD_DIR)/release/libacq_core_no_std_check.a -Wl,--gc-sections
	./$(NO_STD_DIR)/selftest

# The ring's algorithm under the loom model checker (its own target dir: --cfg loom rebuilds deps).
loom-check:
	RUSTFLAGS="--cfg loom" $(CARGO) test --release -p acq-core --test loom \
	  --target-dir target/loom

# The C shim and the simulated SDK under valgrind memcheck: zero errors, no malloc after arm.
shim-memcheck:
	sdk-shim/scripts/memcheck.sh

# The shim built with XSPRESS3_SDK_DIR against stand-in SDKs shaped like the public generations
# (layouts, xsp3_close prototypes, header quirks, link needs); about 20 s, so part of `make test`.
shim-vendor-check:
	sdk-shim/scripts/vendor-build-check.sh

interop: $(VENV_STAMP) $(PHOTON_DAQ_STAMP)
	$(CARGO) build --workspace --bins
	$(VENV)/bin/python -m pytest -q tests/interop tango-device/tests
	$(VENV)/bin/python tests/interop/run_extra_data_suite.py

# The same interop tests at full size (not part of `make test`; tens of minutes on 2 cores): every key
# of every example run side by side with EXtra-data, and the long corruption fuzz.
interop-long: $(VENV_STAMP) $(PHOTON_DAQ_STAMP)
	$(CARGO) build --workspace --bins
	INTEROP_LONG=1 SIDE_BY_SIDE_KEYS_PER_SOURCE=0 EUXFEL_FUZZ_CASES=1500 \
	  $(VENV)/bin/python -m pytest -q tests/interop tango-device/tests

# Criterion benches, then the whole-process comparison scripts (each measures its baseline in the
# same run). Figures go into docs/benchmarks.md with the command that made them.
bench: setup
	$(CARGO) build --release --workspace --bins
	$(CARGO) bench -p benches
	$(VENV)/bin/python benches/scripts/bench_xsp3.py
	$(VENV)/bin/python benches/scripts/bench_lsxfel.py
	$(VENV)/bin/python benches/scripts/bench_daq.py
	$(VENV)/bin/python benches/scripts/bench_pydaq.py
	$(VENV)/bin/python benches/scripts/bench_xfel_write.py
	$(VENV)/bin/python benches/scripts/bench_bridge.py
	$(VENV)/bin/python benches/scripts/bench_components.py
	$(VENV)/bin/python benches/scripts/bench_python.py
	$(VENV)/bin/python benches/scripts/bench_viewer.py
