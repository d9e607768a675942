# The two set-up commands: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT := demo_out
DEMO_IMAGE := examples/chair_photo.jpg

.PHONY: demo test clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The demo needs only the lean runtime (no torch).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

# Tests need everything; constraints.txt keeps torch on the local CPU build (an unpinned torch pulls a multi-GB CUDA build).
$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,export,dev]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/recon-cli infer $(DEMO_IMAGE) --out $(DEMO_OUT) --format obj,glb

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
