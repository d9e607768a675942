# The two set-up commands: `make demo` and `make test`. Both create .venv when needed.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
DEMO_OUT := demo_out

.PHONY: demo test clean

$(STAMP): pyproject.toml constraints.txt
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip
	# constraints.txt keeps torch on the local CPU build (an unpinned torch pulls a multi-GB CUDA build)
	$(BIN)/python -m pip install -q -c constraints.txt -e '.[train,export,dev]'
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/recon-cli data synth --out $(DEMO_OUT)/data --objects 2 --views 4 --image-size 128 --voxel-res 64 --seed 0
	$(BIN)/recon-cli data preview $(DEMO_OUT)/data --out $(DEMO_OUT)/preview.png

test: $(STAMP)
	$(BIN)/python -m pytest -q

clean:
	rm -rf $(DEMO_OUT) .pytest_cache
