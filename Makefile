# Two commands on a fresh machine with Python 3.11:  `make demo`  and  `make test`.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
WORKDIR ?= runs/demo

$(VENV)/.installed: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.txt
	touch $@

# torch + torchvision: only for the torchvision weight-port test and .pth conversion, never training.
$(VENV)/.installed-torch: requirements-torch.txt $(VENV)/.installed
	$(PY) -m pip install --quiet -r requirements-torch.txt
	touch $@

install: $(VENV)/.installed

demo: $(VENV)/.installed
	$(PY) main.py --config=configs/demo.py --workdir=$(WORKDIR)

test: $(VENV)/.installed $(VENV)/.installed-torch
	$(PY) -m pytest -n 2

.PHONY: install demo test
