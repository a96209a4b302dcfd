# Crystallize developer commands.
#
#   make demo    install into .venv (first time only) and run the default example graph
#   make test    install into .venv (first time only) and run the test suite
#   make bench   run the benchmarks (prints figures, asserts nothing)
#
# The install is skipped while .venv holds a stamp whose name carries a checksum of
# pyproject.toml, so a second call starts at once and a dependency change reinstalls.

SHELL := /bin/bash
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
GRAPH ?= graphs/breast_cancer
STAMP := $(VENV)/.installed-$(firstword $(shell cksum pyproject.toml))
RAY_STAMP := $(VENV)/.ray-$(firstword $(shell cksum pyproject.toml))
APT_GET := DEBIAN_FRONTEND=noninteractive apt-get

.DEFAULT_GOAL := help
.PHONY: help demo test bench install graphviz clean

help:
	@echo "make demo    install (once) and run $(GRAPH), printing its summary"
	@echo "make test    install (once) and run the test suite"
	@echo "make bench   install (once) and run the benchmarks"
	@echo "make clean   remove .venv and the stores of the example graphs"

demo: install
	$(BIN)/crystallize run $(GRAPH)

test: install $(RAY_STAMP)
	$(BIN)/python -m pytest -q

bench: install
	@set -e; for file in benchmarks/bench_*.py; do \
	  name=$$(basename $$file .py); echo "== $$name"; $(BIN)/python -m benchmarks.$$name; echo; \
	done

install: $(STAMP) graphviz

# A virtual environment; on Debian without python3-venv, root installs it with apt-get.
$(BIN)/python:
	@if ! $(PYTHON) -m venv $(VENV) >/dev/null 2>&1; then \
	  rm -rf $(VENV); \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "'$(PYTHON) -m venv' failed: installing python3-venv with apt-get"; \
	    $(APT_GET) update -qq && $(APT_GET) install -y -qq python3 python3-venv python3-pip >/dev/null; \
	    $(PYTHON) -m venv $(VENV); \
	  else \
	    echo "error: '$(PYTHON) -m venv' failed; install Python >= 3.10 with its venv module" \
	         "(Debian/Ubuntu: sudo apt-get install python3-venv)" >&2; \
	    exit 1; \
	  fi; \
	fi
	@echo "created $(VENV)"

# Editable install with the dev extras. pip >= 21.3 is needed for editable pyproject installs.
$(STAMP): | $(BIN)/python
	@$(BIN)/python -c "import pip, sys; sys.exit(tuple(map(int, pip.__version__.split('.')[:2])) < (21, 3))" \
	  || $(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[dev]'
	@rm -f $(VENV)/.installed-*
	@touch $@

# The tests also cover the Ray backend (a local cluster), so `make test` adds the ray extra.
$(RAY_STAMP): $(STAMP)
	$(BIN)/python -m pip install --quiet -e '.[dev,ray]'
	@rm -f $(VENV)/.ray-*
	@touch $@

# Graphviz's `dot` draws graph pictures (crystallize render, graph.render("x.svg")).
# Everything else works without it; tests that need it are skipped when it is missing.
graphviz:
	@if command -v dot >/dev/null 2>&1; then \
	  :; \
	elif [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	  echo "Graphviz 'dot' not found: installing the graphviz package with apt-get"; \
	  { $(APT_GET) update -qq && $(APT_GET) install -y -qq graphviz >/dev/null; } \
	    || echo "warning: could not install graphviz; SVG/PNG/PDF pictures will not render" >&2; \
	else \
	  echo "hint: Graphviz 'dot' is not installed, so SVG/PNG/PDF pictures will not render" \
	       "(Debian/Ubuntu: sudo apt-get install graphviz; macOS: brew install graphviz)."; \
	fi

clean:
	rm -rf $(VENV) graphs/*/data
