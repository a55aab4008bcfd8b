# Everything runs inside .venv, created on first use from pyproject.toml + constraints.txt.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  ?=
BATCH_SIZE ?= 1
ARCHIVE := model_store/squeezenet_v1.1.mar

.PHONY: setup test test-quick lint serve archive verify bench clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (MXNet 1.9.1 needs Python 3.11)"; exit 1; }
	@command -v java >/dev/null || { echo "error: java not found on PATH (Multi Model Server needs Java 11+)"; exit 1; }
	@echo "make setup: creating $(VENV) with the packages pinned in constraints.txt (MXNet, Multi Model Server, onnx, ...): about a minute, once"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

## The whole test suite, integration, container and load tests included (what CI runs).
test: setup container-setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -ra

## Everything but the long load test and the container image.
test-quick: setup
	$(BIN)/python -m pytest -ra -m "not load and not container"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

## Build model_store/squeezenet_v1.1.mar (model zoo download, or MODEL=path/to/squeezenet1.1.onnx).
archive: setup
	$(BIN)/squeezenet-mar build $(if $(MODEL),--model-file $(MODEL)) --output $(ARCHIVE)

verify: setup
	$(BIN)/squeezenet-mar verify $(ARCHIVE)

## Build the archive and serve it with MMS in the foreground on 127.0.0.1:8080/8081 (Ctrl-C stops).
serve: archive
	$(BIN)/squeezenet-mar serve --archive $(ARCHIVE) --config config.properties --batch-size $(BATCH_SIZE)

bench: setup
	$(BIN)/python -m benchmarks.run

clean:
	rm -rf $(VENV) model_store/*.mar model_store/*.sha256 logs .pytest_cache

include deploy/image.mk
