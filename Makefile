# rd-edge developer entry points. `make demo` and `make test` work on a fresh machine with python3.
PYTHON ?= python3
VENV ?= .venv
PY := $(VENV)/bin/python
BIN := $(VENV)/bin
TORCH_VERSION ?= 2.13.0
# The CPU build of torch: a plain `pip install torch` on Linux pulls a multi-GB CUDA build.
TORCH_CPU_INDEX ?= https://download.pytorch.org/whl/cpu
DEMO ?= demo
DEMO_CATEGORY ?= weave
DEMO_BACKBONE ?= resnet18
DEMO_SIZE ?= 128
DEMO_STEPS ?= 400

.PHONY: install serve-env demo test test-fast mutation lint lint-imports python-floor jetson-sim clean

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	# torch first, CPU build: a local wheel (offline mirrors) if there is one, else PyTorch's CPU index.
	# --retries 1: an offline mirror answers at once; do not retry an unreachable index five times per package.
	$(PY) -m pip install -q --no-index "torch==$(TORCH_VERSION)" 2>/dev/null \
	  || $(PY) -m pip install -q --retries 1 "torch==$(TORCH_VERSION)" --index-url $(TORCH_CPU_INDEX)
	$(PY) -m pip install -q -e ".[train,cpu,bench,dev,client,station,openvino,genicam,opcua]"
	touch $@

# make demo: each step writes its stamp when done, so `make demo` after an interruption (Ctrl-C,
# a closed terminal) resumes: finished steps are skipped, rd-train continues from its checkpoint.
DEMO_DATA := $(DEMO)/data/$(DEMO_CATEGORY)
DEMO_MODEL := $(DEMO)/model.best.pt

demo: install
	@echo "make demo: $(DEMO_STEPS) training steps ($(DEMO_BACKBONE), $(DEMO_SIZE) px, random teacher) on 2 cores;"
	@echo "  rd-train prints its estimate after the first steps. Interrupted? Run make demo again: it resumes."
	@$(MAKE) --no-print-directory $(DEMO)/.done
	$(PY) scripts/demo_summary.py $(DEMO)

$(DEMO)/.data:
	$(BIN)/rd-edge demo-data $(DEMO)/data --categories $(DEMO_CATEGORY)
	touch $@

# --eval-every: every 20 epochs (100 steps) the test split's AUROC; the best checkpoint is kept as
# model.best.pt (a random teacher's AUROC moves by +-10 points between evaluations).
$(DEMO)/.trained: $(DEMO)/.data
	$(BIN)/rd-train --data $(DEMO_DATA) --backbone $(DEMO_BACKBONE) --image-size $(DEMO_SIZE) \
	  --steps $(DEMO_STEPS) --batch-size 8 --teacher-weights none --eval-every 20 \
	  --checkpoint-every 30 --resume --out $(DEMO)/model.pt
	test -f $(DEMO_MODEL) || cp $(DEMO)/model.pt $(DEMO_MODEL)  # DEMO_STEPS < 100: no evaluation ran
	touch $@

# Calibrated (into the checkpoint, which rd-export carries into the graph) before rd-eval and
# rd-infer run, so both folders show the same verdicts. The demo's test split has 10 good images:
# a line's 1 % cannot be measured on it; 10 % = one of them.
$(DEMO)/.calibrated: $(DEMO)/.trained
	$(BIN)/rd-calibrate $(DEMO_MODEL) --data $(DEMO_DATA) --max-false-alarms 10% --quiet
	touch $@

$(DEMO)/model.onnx: $(DEMO)/.calibrated
	$(BIN)/rd-export $(DEMO_MODEL) -o $@

$(DEMO)/.evaluated: $(DEMO)/model.onnx
	$(BIN)/rd-eval $(DEMO_MODEL) --data $(DEMO_DATA) --json $(DEMO)/metrics.json --save-maps $(DEMO)/maps \
	  --report $(DEMO)/eval --quiet
	touch $@

$(DEMO)/.done: $(DEMO)/.evaluated
	$(BIN)/rd-infer $(DEMO)/model.onnx $(DEMO_DATA)/test --json $(DEMO)/infer.jsonl --out $(DEMO)/infer \
	  --report $(DEMO)/report --quiet > /dev/null
	touch $@

test: install serve-env lint python-floor
	$(PY) -m pytest -q

# The suite without the tests marked slow (pytest -m "not slow"): a quick check while working.
test-fast: install lint python-floor
	$(PY) -m pytest -q -m "not slow"

# Nightly, not in `make test`: scripts/mutation_check.py plants each of its one-line bugs in a copy of
# the tree, runs the few tests named for it and prints the table (area, mutation, caught or MISSED) and
# the mutation score; exit 1 when a mutation is missed or its line went stale. MUTATION_ARGS="--only tile".
MUTATION_ARGS ?=
mutation: install serve-env
	$(PY) scripts/mutation_check.py --timeout 300 $(MUTATION_ARGS)

# rd-serve's own environment (the tests start rd-serve from it): the Triton Python-backend stub
# that nvidia-pytriton ships is built for numpy 1.x, the main venv has numpy 2 (docs/serving.md).
SERVE_VENV ?= .venv-serve
serve-env: $(SERVE_VENV)/.installed

$(SERVE_VENV)/.installed: pyproject.toml
	test -x $(SERVE_VENV)/bin/python || $(PYTHON) -m venv $(SERVE_VENV)
	$(SERVE_VENV)/bin/python -m pip install -q -e ".[serve]"
	touch $@

# The developer gates (also .pre-commit-config.yaml): ruff (pyflakes, pycodestyle, import order), ruff format,
# mypy over the torch-free core and runtime ([tool.ruff], [tool.mypy] in pyproject.toml), the layers.
lint: install lint-imports
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# The layer rules of ARCHITECTURE.md ([tool.importlinter] in pyproject.toml).
lint-imports: install
	PYTHONPATH=benchmarks $(BIN)/lint-imports

# The runtime's Python floor (requires-python >= 3.8: JetPack 5): any newer syntax or standard-library
# call in the code a Jetson runs fails here (no Python 3.8 to run the code with here: Debian 12 has 3.11).
python-floor: install
	$(BIN)/vermin --target=3.8- --violations --no-tips rd_edge/core rd_edge/runtime

# docs/jetson.md's install and the runtime on arm64 Debian roots under qemu-user-static, with the
# distribution's Python, numpy and OpenCV (scripts/jetson_sim/run.sh; root). Measured cold (empty
# cache), idle, 2 cores: bullseye 9.3 min (prepare 24 s, debootstrap 280 s, checks 254 s), bookworm
# 9.4 min more (debootstrap 330 s, checks 235 s); the roots are then cached in
# ~/.cache/rd-edge/jetson-sim. Its own CI step after make test, both releases (.ci/run); where
# binfmt_misc cannot be registered (an unprivileged container) it prints SKIP with the reason and
# exits 0, or 1 with JETSON_SIM_REQUIRED=1. JETSON_SIM_RELEASES="bullseye bookworm" runs both.
JETSON_SIM_RELEASES ?= bullseye
jetson-sim: install
	JETSON_SIM_RELEASES="$(JETSON_SIM_RELEASES)" BIN=$(BIN) scripts/jetson_sim/run.sh

clean:
	rm -rf $(VENV) $(SERVE_VENV) $(DEMO) build *.egg-info cpp_examples/build
