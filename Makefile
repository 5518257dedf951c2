# Two commands do everything on a fresh machine:
#   make demo   -- creates $(VENV), installs slt, runs the main job (python -m slt.demo)
#   make test   -- creates $(VENV), installs slt with the dev extras, runs the test suite
# PYTHON picks the interpreter (default python3); VENV the environment folder.
PYTHON ?= python3
VENV ?= .venv
PIP_FLAGS ?= -q

.PHONY: demo test bench lint clean

$(VENV)/.slt-installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) --upgrade pip
	$(VENV)/bin/python -m pip install $(PIP_FLAGS) -e '.[dev]'
	touch $@

demo: $(VENV)/.slt-installed
	$(VENV)/bin/python -m slt.demo

test: $(VENV)/.slt-installed
	$(VENV)/bin/python -m pytest

bench: $(VENV)/.slt-installed
	$(VENV)/bin/python benchmarks/dln_accuracy.py
	$(VENV)/bin/python benchmarks/speed.py

lint: $(VENV)/.slt-installed
	$(VENV)/bin/ruff check slt tests benchmarks

clean:
	rm -rf $(VENV) .venv-py312 build *.egg-info
