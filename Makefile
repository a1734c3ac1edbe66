# attnbench: `make bench` measures, `make test` checks. Both build .venv first
# when it is missing (or when the project's requirements changed).
PYTHON ?= python3
VENV ?= .venv
REQUIREMENTS ?= requirements/cpu.txt
# test: pytest, hypothesis, pytest-benchmark; ray: the Ray executor (and its tests).
EXTRAS ?= test,ray
SUITE ?= suites/default.toml
ARGS ?=
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

# The GPU check runs on a GPU machine's own Python (no venv, no install).
GPU_PYTHON ?= python3
OUT ?=

.PHONY: setup bench calibrate smoke test check check-all gpu-check fidelity publish clean help

help:
	@echo "make bench     run $(SUITE) (SUITE=suites/smoke.toml to pick another; ARGS=... passes options)"
	@echo "make calibrate this CPU's roof per dtype (attnbench env --calibrate), for pct_peak on CPUs"
	@echo "make test      the test suite (unit, conformance, integration)"
	@echo "make check     attnbench check: every backend, variant, workload, dtype, mode and mask"
	@echo "               against float64 and against each other (a few minutes; ARGS=... options)"
	@echo "make check-all the check at every shape, then the whole test suite, slow cases included"
	@echo "make gpu-check [OUT=DIR]  on a GPU machine, with its own python3 (nothing installed):"
	@echo "               GPU tests, a short GPU suite, the check on the GPU (6 min on one H200, < 10 at its limits)"
	@echo "make fidelity  harness medians beside a bare timing loop of the same call"
	@echo "make publish RUN=results/<run> NAME=<name>  its report into results/published/NAME/"
	@echo "make setup     create $(VENV) and install (REQUIREMENTS=requirements/gpu.txt on GPUs)"

setup: $(STAMP)

$(STAMP): pyproject.toml $(REQUIREMENTS)
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -r $(REQUIREMENTS) -e '.[$(EXTRAS)]'
	touch $(STAMP)

bench: $(STAMP)
	$(BIN)/attnbench run $(SUITE) $(ARGS)

smoke: $(STAMP)
	$(BIN)/attnbench run suites/smoke.toml $(ARGS)

test: $(STAMP)
	$(BIN)/python -m pytest -q -m "not slow" $(ARGS)

calibrate: $(STAMP)
	$(BIN)/attnbench env --calibrate $(ARGS)

check: $(STAMP)
	$(BIN)/attnbench check $(ARGS)

check-all: $(STAMP)
	$(BIN)/attnbench check --all-shapes $(ARGS)
	$(BIN)/python -m pytest -q

publish: $(STAMP)
	@test -n "$(RUN)" -a -n "$(NAME)" || { echo "usage: make publish RUN=results/<run> NAME=<name>"; exit 2; }
	$(BIN)/attnbench publish $(RUN) --name $(NAME)

gpu-check:
	PYTHON=$(GPU_PYTHON) bash scripts/gpu_check.sh $(OUT)

fidelity: $(STAMP)
	$(BIN)/python benchmarks/fidelity.py $(ARGS)

clean:
	rm -rf $(VENV) .pytest_cache .hypothesis
