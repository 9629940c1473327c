# A fresh machine with Python 3.11, 3.12 or 3.13:  `make demo`  and  `make test` (no torch).
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo
LOGDIR ?= runs
# Extra pip arguments for `make test-torch`, e.g. an index of CPU-only torch wheels (the default
# index's Linux torch brings the CUDA libraries, several GB): TORCH_PIP_ARGS="--index-url ...".
TORCH_PIP_ARGS ?=
# Supported: the pinned jax/jaxlib/numpy wheels exist for these (checked when the venv is made).
SUPPORTED_PYTHON := 3.11 3.12 3.13

$(VENV)/.installed: requirements.txt
	@$(PYTHON) -c 'import sys; v = "%d.%d" % sys.version_info[:2]; sys.exit(0 if v in "$(SUPPORTED_PYTHON)".split() else f"$(PYTHON) is Python {v}; aplt_jax supports Python $(SUPPORTED_PYTHON) (the versions with wheels for the pinned jax, jaxlib and numpy). Pick one with e.g. make PYTHON=python3.11 ...")'
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# torch + torchvision: only for the live weight-port test and .pth conversion, never training.
$(VENV)/.installed-torch: requirements-torch.txt $(VENV)/.installed
	$(PY) -m pip install --quiet $(TORCH_PIP_ARGS) -r requirements-torch.txt
	touch $@

$(VENV)/.installed-tensorboard: requirements-tensorboard.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-tensorboard.txt
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) main.py --config=configs/demo.py --workdir=$(WORKDIR)

# Everything but the live torch comparison (tests/test_pretrained_torch.py skips without torch).
test: $(VENV)/.installed
	$(PY) -m pytest -n 2 --dist worksteal

# The Flax ResNet against torchvision itself, and the stored golden logits against today's torch.
test-torch: $(VENV)/.installed-torch
	APLT_REQUIRE_TORCH=1 $(PY) -m pytest -p no:xdist tests/test_pretrained_torch.py \
	    tests/test_pretrained_mmaction2.py

# Every run's scalars (and the grids' hyperparameters) under $(LOGDIR), at http://localhost:6006.
tensorboard: $(VENV)/.installed-tensorboard
	$(VENV)/bin/tensorboard --logdir $(LOGDIR)

.PHONY: install demo test test-torch tensorboard
