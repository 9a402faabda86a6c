# The two commands of the README: `make demo` and `make test`. Both build .venv on first use.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin

.PHONY: demo test bench clean

demo: $(VENV)/.deps
	$(BIN)/shadowdiff demo

test: $(VENV)/.deps
	$(BIN)/python -m pytest $(PYTEST_ARGS)

bench: $(VENV)/.deps
	$(BIN)/python benchmarks/replay.py

# pip 25.1+ reads dependency groups (--group); the venv's own pip may be older.
# setup.py compiles modules of shadowdiff/capture/pcap (mypyc) in place: rebuild when they change.
$(VENV)/.deps: pyproject.toml setup.py $(wildcard shadowdiff/capture/pcap/*.py)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade 'pip>=25.1'
	$(BIN)/python -m pip install -q -e '.[all]' --group dev
	touch $@

clean:
	rm -rf $(VENV) build *.egg-info shadowdiff/capture/pcap/*.so
