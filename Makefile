# Two commands do everything: `make demo` (set-up + one real cell) and `make test` (the test suite).
VENV ?= .venv
PY := $(VENV)/bin/python
export WANDB_MODE ?= offline
# The real CIFAR-10 of this project's machines (../shared/data/cifar10, read in place, never copied):
# datasets look under $BENCH_DATA_DIR/<name> before they download.
SHARED_DATA := $(abspath ../shared/data)
ifneq ($(wildcard $(SHARED_DATA)/cifar10/cifar-10-batches-py/test_batch),)
export BENCH_DATA_DIR ?= $(SHARED_DATA)
endif

.PHONY: setup data demo test test-full lint clean-cache

$(VENV)/.installed: pyproject.toml scripts/setup.sh
	bash scripts/setup.sh $(VENV)
	touch $@

setup: $(VENV)/.installed data

data:
	bash scripts/fetch_fashion_mnist.sh $(PY)

demo: setup
	$(PY) -m bench experiment=demo

lint: $(VENV)/.installed
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .

# Two single-thread pytest-xdist workers (the 1,007 non-SLURM tests in 5 min 38 s on 2 cores, measured),
# then the SLURM tests on their own: each starts a single-node cluster, and two at once collide.
test: setup lint
	OMP_NUM_THREADS=1 $(PY) -m pytest -m "not slow and not slurm" -n 2 --durations=20
	$(PY) -m pytest -m "slurm and not slow"

test-full: setup lint
	$(PY) -m pytest

clean-cache:
	rm -rf .cache/models
