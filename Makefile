# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install up bench schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/salesbus demo

test: $(STAMP)
	$(BIN)/python -m pytest -q tests

up: $(STAMP)
	$(BIN)/salesbus up

bench: $(STAMP)
	$(BIN)/python bench/checkout_bench.py

schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

clean:
	rm -rf .salesbus
