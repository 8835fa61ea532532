# The two set-up commands of the README: `make run` and `make test`.
# Each creates the virtualenv (.venv) on first use and reinstalls when pyproject.toml changes.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.PHONY: run test lint venv clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

## Run poolgate's main job on the embedded default: the whole gateway (real Envoy, endpoint pickers, simulated vLLM
## pods) from examples/quickstart.yaml, until Ctrl-C.
run: $(STAMP)
	$(BIN)/poolgate up -f examples/quickstart.yaml

## Run every test (unit, e2e on real Envoy and real processes) after the lint and format checks.
## Exit code 5 (no tests collected) counts as failure.
test: $(STAMP) lint
	$(BIN)/python -m pytest -n 2 --dist loadgroup $(PYTEST_ARGS)

## Lint and format checks (ruff) the test command runs first.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

clean:
	rm -rf $(VENV) .pytest_cache build *.egg-info
