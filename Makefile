# Everything runs inside .venv, created on first use from pyproject.toml + constraints.txt.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  ?=
BATCH_SIZE ?=
ARCHIVE := model_store/squeezenet_v1.1.mar

.PHONY: setup test test-quick lint serve archive verify bench bench-setup clean

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
test: setup container-setup bench-setup
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

## Build the archive and serve it with MMS in the foreground on 127.0.0.1:8080/8081 (Ctrl-C stops);
## serve's own defaults unless BATCH_SIZE=N is given.
serve: archive
	$(BIN)/squeezenet-mar serve $(ARCHIVE) --config config.properties $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE))

## Every benchmark in one run: benchmarks/results/report.{json,png} (about 6 minutes on 2 cores).
bench: setup bench-setup
	$(BIN)/python -m benchmarks.run

## ApacheBench (apache2-utils, from Debian, as root; nothing when installed): the serving comparison's
## load generator. Without it the benchmark falls back to a Python client that shares the cores.
bench-setup:
	@command -v ab >/dev/null || { \
		test "$$(id -u)" -eq 0 || { echo "error: installing apache2-utils needs root (sudo make bench-setup)"; exit 1; }; \
		echo "make bench-setup: installing apache2-utils (ApacheBench) from Debian"; \
		DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apache2-utils >/dev/null 2>&1 || \
		{ apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends apache2-utils >/dev/null; }; }

clean:
	rm -rf $(VENV) model_store/*.mar model_store/*.sha256 logs .pytest_cache

include deploy/image.mk
