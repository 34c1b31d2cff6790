# `make demo` and `make test` each do all set-up on a fresh machine: a .venv, the package, the run.
PYTHON ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
# torch==2.13.0 first, so pip takes the CPU build on disk instead of a CUDA download.
TORCH_SPEC ?= torch==2.13.0
PIP_FLAGS ?= --disable-pip-version-check
DEMO_ARGS ?=

.PHONY: install demo test bench clean

$(BIN)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install $(PIP_FLAGS) -q --upgrade pip
	$(BIN)/pip install $(PIP_FLAGS) -q "$(TORCH_SPEC)"
	$(BIN)/pip install $(PIP_FLAGS) -q -c constraints.txt -e ".[test]"
	touch $@

install: $(BIN)/.installed

demo: install
	$(BIN)/slmshift demo $(DEMO_ARGS)

test: install
	$(BIN)/python -m pytest -q -p no:cacheprovider

bench: install
	$(BIN)/python bench/capture_overhead.py

clean:
	rm -rf $(VENV) .slmshift build *.egg-info
