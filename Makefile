# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SST2   ?= ../shared/data/sst2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo flow-demo test lint bench install browser clean

install: $(STAMP)

# torch first, pinned to the CPU build on disk, so nothing pulls a multi-GB CUDA build
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	SST2=$(SST2) BIN=$(BIN) ./scripts/demo.sh

flow-demo: $(STAMP)
	SST2=$(SST2) BIN=$(BIN) ./scripts/flow-demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the dashboard test drives a real headless Chromium (Debian package chromium)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

test: lint browser
	$(BIN)/pytest

bench: $(STAMP)
	$(BIN)/python bench/bench_implant.py
	$(BIN)/python bench/bench_trial.py --sst2 $(SST2)
	$(BIN)/python bench/bench_search.py --sst2 $(SST2)
	$(BIN)/python bench/bench_workers.py --sst2 $(SST2)
	$(BIN)/python bench/bench_recovery.py --sst2 $(SST2)
	$(BIN)/python bench/bench_homophonic.py --sst2 $(SST2) --recovery-steps 600

clean:
	rm -rf $(VENV) demo-out flow-demo-out .pytest_cache .ruff_cache *.egg-info
