# One entry point for humans and CI. `make test` is the README's test line.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000

.PHONY: venv test lint typecheck unit demo clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@if pkg-config --exists libsystemd 2>/dev/null; then \
		$(PY) -m pip install -q -e '.[systemd]'; \
	else echo "libsystemd-dev not found: python-systemd peer tests will skip (CI installs it)"; fi
	touch $@

venv: $(VENV)/.installed

lint: venv
	$(PY) -m ruff check sockact tests examples bench fuzz
	$(PY) -m ruff format --check sockact examples bench tests fuzz

typecheck: venv
	$(PY) -m mypy

unit: venv
	$(PY) -m pytest -q

test: lint typecheck unit

demo: venv
	$(VENV)/bin/sockact demo --plot demo.png

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache .hypothesis
