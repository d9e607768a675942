# The two set-up commands: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
DEMO_OUT := demo_out
DEMO_IMAGE := examples/chair_photo.jpg

.PHONY: demo test clean browser

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

# The demo needs only the lean runtime (no torch).
$(VENV)/.runtime: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q -e .
	touch $@

# PyTorch's CPU wheel index as an extra index where it is reachable: constraints.txt's torch==2.13.0 then
# resolves to 2.13.0+cpu (PEP 440 ranks the local version above the plain one), not the CUDA build the public
# index ships for Linux (about 20 nvidia packages). Where only PyPI is reachable the probe fails in a second
# and pip is not given an index it would retry for every package. `=`, not `:=`: probed only when installing.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
TORCH_INDEX = $(shell $(PYTHON) -c "import urllib.request as r; r.urlopen('$(TORCH_CPU_INDEX)/torch/', timeout=5)" \
                2>/dev/null && echo --extra-index-url $(TORCH_CPU_INDEX))

# Tests need everything; torch pinned by constraints.txt, from the CPU index when reachable (above).
$(VENV)/.dev: pyproject.toml constraints.txt | $(BIN)/python
	$(BIN)/python -m pip install -q -c constraints.txt $(TORCH_INDEX) -e '.[train,export,dev]'
	touch $@ $(VENV)/.runtime

demo: $(VENV)/.runtime
	$(BIN)/recon-cli infer $(DEMO_IMAGE) --out $(DEMO_OUT) --format obj,glb

test: $(VENV)/.dev
	$(BIN)/python -m pytest -q -p no:cacheprovider

# The browser tests (viewer, serve) drive Debian's Chromium headless through Playwright (pip, in .[dev]);
# they skip without it. Needs root for apt-get; Playwright's own browser download is never used.
browser:
	@test -x /usr/bin/chromium || { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; }

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
