# neurall-neuro: one-command environment, tests, demo, benchmarks.
SHELL := /bin/bash
VENV ?= .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
PYTEST_ARGS ?=

.PHONY: venv test demo bench lint clean-venv

venv: $(STAMP)

# Rebuilt only when pyproject.toml changes (or the venv is missing).
$(STAMP): pyproject.toml scripts/find_python310.sh scripts/make_venv.sh
	scripts/make_venv.sh $(VENV)

test: venv
	$(PY) -m pytest $(PYTEST_ARGS)

demo: venv
	$(VENV)/bin/neurall demo

bench: venv
	$(PY) -m benchmarks.run

lint: venv
	$(VENV)/bin/ruff check neurall_neuro conversion hw_targets energy tests benchmarks
	$(VENV)/bin/ruff format --check neurall_neuro conversion hw_targets energy tests benchmarks

clean-venv:
	rm -rf $(VENV)
