# Everything runs inside .venv, created on first use from pyproject.toml + constraints.txt.
PYTHON ?= python3.11
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed-stamp
MODEL  ?=
SIGN_KEY ?=
BATCH_SIZE ?=
ARCHIVE := model_store/squeezenet_v1.1.mar
# What the archive is built from: rebuilt only when one of these changed (or MODEL names another file).
ARCHIVE_INPUTS := signature.json synset.txt handler/squeezenet_service.py handler/requirements.txt $(wildcard handler/squeezenet_handler/*.py)
BUILD_ARGS := model_store/.build-args

# TorchServe 0.12 (CPU torch, ONNX Runtime, no MXNet) in a virtualenv of its own: the second real server
# the tests run the archive on. Its own virtualenv because MXNet's numpy<1.24 and torch's numpy clash.
TS_VENV  ?= .venv-torchserve
TS_STAMP := $(TS_VENV)/.installed-stamp
# What the archive needs on TorchServe, plus what the tests ask of it (signing at load, metrics); the
# versions come from constraints-torchserve.txt. torch is the CPU wheel, pinned there: never resolved.
TS_PACKAGES := torchserve torch pyyaml onnxruntime pillow numpy model-signing pyopenssl prometheus_client psutil requests

.PHONY: setup torchserve-setup system-setup test test-quick lint serve archive verify bench bench-setup clean

$(STAMP): pyproject.toml constraints.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found (MXNet 1.9.1 needs Python 3.11)"; exit 1; }
	@command -v java >/dev/null || { echo "error: java not found on PATH (Multi Model Server needs Java 11+)"; exit 1; }
	@echo "make setup: creating $(VENV) with the packages pinned in constraints.txt (MXNet, Multi Model Server, onnx, ...): about a minute, once"
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -c constraints.txt -e ".[dev]"
	@touch $(STAMP)

setup: $(STAMP)

$(TS_STAMP): constraints-torchserve.txt
	@command -v $(PYTHON) >/dev/null || { echo "error: $(PYTHON) not found"; exit 1; }
	@echo "make torchserve-setup: creating $(TS_VENV) with TorchServe 0.12, CPU torch and ONNX Runtime (constraints-torchserve.txt): about a minute, once"
	$(PYTHON) -m venv $(TS_VENV)
	$(TS_VENV)/bin/python -m pip install --quiet --upgrade pip
	$(TS_VENV)/bin/python -m pip install --quiet -c constraints-torchserve.txt $(TS_PACKAGES)
	@$(TS_VENV)/bin/python -c "import torch; assert torch.__version__.endswith('+cpu'), torch.__version__" \
		|| { echo "error: $(TS_VENV) got a torch that is not the CPU build"; exit 1; }
	@touch $(TS_STAMP)

## TorchServe's virtualenv for the tests (tests/torchserve.py finds it; `make test` makes it).
torchserve-setup: $(TS_STAMP)

## As root, once: the Debian packages outside the virtualenv (nginx, ApacheBench, Prometheus, kubectl),
## podman and the local container base image. Quiet when everything is there.
system-setup: container-setup
	@bash scripts/system-setup.sh

## The whole test suite, integration, container and load tests included (what CI runs).
test: setup torchserve-setup system-setup
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/python -m pytest -ra

## Everything but the long load test and the container image.
test-quick: setup torchserve-setup
	$(BIN)/python -m pytest -ra -m "not load and not container"

lint: setup
	$(BIN)/ruff check . && $(BIN)/ruff format --check .

## Build model_store/squeezenet_v1.1.mar (model zoo download, or MODEL=path/to/squeezenet1.1.onnx;
## SIGN_KEY=keys/publisher.pem signs it). Only when its inputs changed: a signed archive is never
## rebuilt unsigned behind your back, and `make serve` serves the archive you have.
archive: $(ARCHIVE)
ifneq ($(SIGN_KEY),)
	@test -f $(ARCHIVE).sig || $(BIN)/squeezenet-mar sign $(ARCHIVE) --signing-key $(SIGN_KEY)
endif

$(ARCHIVE): $(ARCHIVE_INPUTS) $(MODEL) $(BUILD_ARGS) | $(STAMP)
	@if test -f $(ARCHIVE) && test -f $(ARCHIVE).sig && test -z "$(SIGN_KEY)"; then \
		echo "error: $(ARCHIVE) is signed and its inputs changed: rebuilding would drop its signature." \
			"Rebuild and sign with SIGN_KEY=path/to/key.pem, or delete $(ARCHIVE) first"; exit 2; fi
	$(BIN)/squeezenet-mar build $(if $(MODEL),--model-file $(MODEL)) --output $(ARCHIVE) \
		$(if $(SIGN_KEY),--signing-key $(SIGN_KEY))

# The model the archive is built from, as a file whose date changes only when MODEL does.
$(BUILD_ARGS): FORCE
	@mkdir -p $(dir $@)
	@echo 'MODEL=$(MODEL)' | cmp -s - $@ || echo 'MODEL=$(MODEL)' > $@

.PHONY: FORCE
FORCE:

verify: setup
	$(BIN)/squeezenet-mar verify $(ARCHIVE)

## Build the archive and serve it with MMS in the foreground on 127.0.0.1:8080/8081 (Ctrl-C stops);
## serve's own defaults unless BATCH_SIZE=N is given.
serve: archive
	$(BIN)/squeezenet-mar serve $(ARCHIVE) --config config.properties $(if $(BATCH_SIZE),--batch-size $(BATCH_SIZE))

## Every benchmark in one run: benchmarks/results/report.{json,png} (about 21 minutes on 2 cores;
## `.venv/bin/python -m benchmarks.run --quick` for a rough one). TorchServe's virtualenv is the baseline.
bench: setup system-setup torchserve-setup
	$(BIN)/python -m benchmarks.run

## ApacheBench (apache2-utils, from Debian, as root): the serving comparison's load generator. Part of
## system-setup; kept as a name of its own.
bench-setup:
	@bash scripts/system-setup.sh

clean:
	rm -rf $(VENV) $(TS_VENV) model_store/*.mar model_store/*.sha256 model_store/*.sig $(BUILD_ARGS) logs .pytest_cache

include deploy/image.mk
