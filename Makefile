# One entry point for humans and CI. `make test` is the README's test line.
VENV   ?= .venv
PY     := $(VENV)/bin/python
PORT   ?= 8000

# The unit tests (no load, no booted systemd, no third-party servers) that also run on the oldest and
# newest CPython sockact supports (make unit-versions). Interop with the servers stays on $(PY).
UNIT_TESTS := tests/test_address.py tests/test_env.py tests/test_bind.py tests/test_inherit.py \
	tests/test_notify.py tests/test_daemon_api.py tests/test_daemon_crosscheck.py tests/test_public_api.py \
	tests/test_cli_inspect.py tests/test_trust.py tests/test_spawn.py tests/test_upgrade.py \
	tests/test_supervisor.py tests/test_serve_drain.py tests/test_workers.py tests/test_examples.py tests/test_record.py
VERSIONS   ?= 3.10 3.13
# An interpreter for each version: pyenv's install first (the `python3.X` shim may point elsewhere), else PATH.
python_for = $(or $(lastword $(wildcard $(HOME)/.pyenv/versions/$(1).*/bin/python$(1))),$(shell command -v python$(1)))

.PHONY: venv test lint typecheck unit unit-versions demo dist clean

$(VENV)/.installed: pyproject.toml
	python3 -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[servers,plot]' --group dev
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

# --durations: the 15 slowest tests in every run, so that CI's log shows what to trim to stay under ~12 min.
unit: venv
	$(PY) -m pytest -q --durations=15

test: lint typecheck unit

# .venv-3.10, .venv-3.13: sockact with its servers (+ python-systemd when libsystemd-dev is there) and the
# test group: no lint tools, no atheris (no wheels for every version), no matplotlib.
.venv-%/.installed: pyproject.toml
	@test -n "$(call python_for,$*)" || { echo "no CPython $* found (pyenv install $*, or put python$* on PATH)" >&2; exit 1; }
	$(call python_for,$*) -m venv .venv-$*
	.venv-$*/bin/python -m pip install -q --upgrade pip
	.venv-$*/bin/python -m pip install -q -e '.[servers]' --group test
	@if pkg-config --exists libsystemd 2>/dev/null; then .venv-$*/bin/python -m pip install -q -e '.[systemd]'; fi
	touch $@

unit-versions: $(foreach v,$(VERSIONS),.venv-$(v)/.installed)
	@for v in $(VERSIONS); do echo "== CPython $$v"; .venv-$$v/bin/python -m pytest -q -p no:cacheprovider $(UNIT_TESTS) || exit 1; done

# The demo needs sockact and matplotlib only (not the test tools, servers or a C build of python-systemd).
$(VENV)/.demo: pyproject.toml
	test -x $(PY) || python3 -m venv $(VENV)
	$(PY) -m pip install -q -e '.[plot]'
	touch $@

demo: $(VENV)/.demo
	@$(PY) -c 'import matplotlib' 2>/dev/null || { echo "make demo: matplotlib is missing from $(VENV): $(PY) -m pip install -e '.[plot]'" >&2; exit 2; }
	$(VENV)/bin/sockact demo --plot demo.png

# sdist and wheel in dist/, checked as PyPI would (twine check).
dist: venv
	rm -rf dist
	$(PY) -m build --no-isolation --outdir dist
	$(PY) -m twine check --strict dist/*

clean:
	rm -rf $(VENV) .venv-3.* dist .pytest_cache .mypy_cache .ruff_cache .hypothesis
