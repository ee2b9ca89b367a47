# softswitch: `make run` starts the switch, `make test` runs the tests, `make bench` prints figures.
# Every target sets up what it needs (Debian packages, a virtualenv in .venv) on a fresh machine.

PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
CONFIG ?= config/softswitch.yaml

.PHONY: run test bench lint cert setup setup-test prompts clean

$(VENV)/.run-stamp: pyproject.toml scripts/setup-system.sh
	scripts/setup-system.sh run
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip >/dev/null
	$(PY) -m pip install -q -e .
	touch $@

$(VENV)/.test-stamp: $(VENV)/.run-stamp
	scripts/setup-system.sh test
	$(PY) -m pip install -q -e '.[test]'
	touch $@

setup: $(VENV)/.run-stamp
setup-test: $(VENV)/.test-stamp

cert: setup
	$(PY) -m softswitch cert --config $(CONFIG)

prompts: setup
	$(PY) -m softswitch prompts --config $(CONFIG)

run: setup
	$(PY) -m softswitch cert --config $(CONFIG) --if-missing
	$(PY) -m softswitch prompts --config $(CONFIG) --if-missing
	$(PY) -m softswitch serve --config $(CONFIG)

test: setup-test
	$(PY) -m ruff check softswitch tests bench
	$(PY) -m softswitch prompts --config $(CONFIG) --if-missing
	$(PY) -m pytest -q

bench: setup-test
	$(PY) bench/run_all.py

lint: setup-test
	$(PY) -m ruff check softswitch tests bench

clean:
	rm -rf $(VENV) var .pytest_cache .ruff_cache
