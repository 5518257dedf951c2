# Two commands do everything on a fresh machine:
#   make demo   -- creates $(VENV), installs slt (its runtime dependencies only), runs the main job (python -m slt.demo)
#   make test   -- creates $(VENV), installs slt with the dev extras, runs the test suite
# PYTHON picks the interpreter (default python3); VENV the environment folder. Each install leaves a stamp
# in $(VENV): .slt-installed (runtime) and .slt-dev-installed (with the dev extras, which implies runtime),
# so `make test` after `make demo` still installs the dev extras, and `make demo` after `make test` installs
# nothing.
PYTHON ?= python3
VENV ?= .venv
PIP_FLAGS ?= -q

.PHONY: demo test notebooks bench lint clean

$(VENV)/bin/python:
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip

$(VENV)/.slt-installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -e .
	touch $@

$(VENV)/.slt-dev-installed: pyproject.toml | $(VENV)/bin/python
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@ $(VENV)/.slt-installed

demo: $(VENV)/.slt-installed
	$(VENV)/bin/python -m slt.demo

test: $(VENV)/.slt-dev-installed
	$(VENV)/bin/python -m pytest

# Executes every notebook in notebooks/ in place, outputs saved (a timeout per notebook; see the script).
notebooks: $(VENV)/.slt-dev-installed
	$(VENV)/bin/python scripts/run_notebooks.py

bench: $(VENV)/.slt-installed
	$(VENV)/bin/python benchmarks/dln_accuracy.py
	$(VENV)/bin/python benchmarks/speed.py

lint: $(VENV)/.slt-dev-installed
	$(VENV)/bin/ruff check slt tests benchmarks scripts

clean:
	rm -rf $(VENV) .venv-py312 build *.egg-info
