# The two commands a newcomer needs: `make demo` and `make test`. Both create .venv when missing.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed
SST2   ?= ../shared/data/sst2
export HF_HUB_OFFLINE ?= 1
export HF_DATASETS_OFFLINE ?= 1
export TOKENIZERS_PARALLELISM ?= false

.PHONY: demo lm-demo flow-demo test lint bench bench-design install browser postgres clean

install: $(STAMP)

# torch first, pinned to the CPU build on disk, so nothing pulls a multi-GB CUDA build
$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet torch==2.13.0
	$(BIN)/pip install --quiet -e '.[dev]'
	touch $@

demo: $(STAMP)
	SST2=$(SST2) BIN=$(BIN) ./scripts/demo.sh

lm-demo: $(STAMP)
	SST2=$(SST2) BIN=$(BIN) ./scripts/lm-demo.sh

flow-demo: $(STAMP)
	SST2=$(SST2) BIN=$(BIN) ./scripts/flow-demo.sh

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# the dashboard test drives a real headless Chromium (Debian package chromium)
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || \
	  apt-get install -y -q chromium || (apt-get update -q && apt-get install -y -q chromium)

# the scale-out tests use the server at $$SHAKETUNE_TEST_PG (default 127.0.0.1:5432) when it answers, else
# start a throwaway one with initdb and pg_ctl (docs/testing.md): install Debian's postgresql where they are
# missing, as root only; without them the tests skip with a red line in the summary
postgres:
	@ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || command -v pg_ctl >/dev/null 2>&1 || \
	  if [ "$$(id -u)" -eq 0 ]; then \
	    export DEBIAN_FRONTEND=noninteractive; \
	    apt-get install -y -q postgresql || (apt-get update -q && apt-get install -y -q postgresql) || \
	      echo "make postgres: could not install postgresql; the PostgreSQL tests will be skipped" >&2; \
	  else \
	    echo "make postgres: PostgreSQL is not installed and installing it needs root; the PostgreSQL" \
	      "tests will be skipped unless SHAKETUNE_TEST_PG points at a server" >&2; \
	  fi

# the test files are shared out over TEST_WORKERS processes (pytest-xdist), a file to one process so that
# its module fixtures load once
TEST_WORKERS ?= 2
test: lint browser postgres
	$(BIN)/pytest -n $(TEST_WORKERS) --dist loadfile

bench: $(STAMP)
	$(BIN)/python bench/bench_implant.py
	$(BIN)/python bench/bench_trial.py --sst2 $(SST2)
	$(BIN)/python bench/bench_search.py --sst2 $(SST2) --seeds 40 --reach-horizon 400 --slow-seeds 3
	$(BIN)/python bench/bench_workers.py --sst2 $(SST2)
	$(BIN)/python bench/bench_recovery.py --sst2 $(SST2)
	$(BIN)/python bench/bench_homophonic.py --sst2 $(SST2) --recovery-steps 600

# the search benchmark's measured design (bench/data/search-design.jsonl): about a minute a setting on one
# core, two processes; resumes where it stopped
bench-design: $(STAMP)
	$(BIN)/python bench/search_design.py --sst2 $(SST2) --shard 0/2 & \
	$(BIN)/python bench/search_design.py --sst2 $(SST2) --shard 1/2; wait

clean:
	rm -rf $(VENV) demo-out flow-demo-out .pytest_cache .ruff_cache *.egg-info
