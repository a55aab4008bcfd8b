# The serving image. Included by the main Makefile (`include deploy/image.mk`), whose ARCHIVE, BIN
# and setup it uses. Podman reads this repository's containers.conf (runc, cgroupfs, file events,
# ulimits within this machine's hard limits).
IMAGE_TAG         ?= squeezenet-mms:latest
IMAGE_GENERIC_TAG ?= squeezenet-mms:generic
# Empty: $BASE_IMAGE, else the local bookworm-minbase image when imported, else python:3.11-slim-bookworm.
BASE_IMAGE        ?=
export CONTAINERS_CONF ?= $(CURDIR)/deploy/podman/containers.conf

.PHONY: container-setup image image-generic image-measure

## podman, runc, mmdebstrap, catatonit ... from Debian (as root; quiet when installed), and the
## local base image when no registry answers.
container-setup:
	@bash deploy/container-setup.sh

## squeezenet-mms:latest with model_store/squeezenet_v1.1.mar baked in (built first if missing:
## `make image MODEL=path/to/squeezenet1.1.onnx` works as for `make archive`).
image: setup container-setup
	@test -f $(ARCHIVE) || $(MAKE) --no-print-directory archive
	$(BIN)/python deploy/image.py --archive $(ARCHIVE) --tag $(IMAGE_TAG) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))

## squeezenet-mms:generic: no archive inside; name one at run time (SQUEEZENET_MODEL_URL, /models, /opt/ml/model).
image-generic: setup container-setup
	$(BIN)/python deploy/image.py --no-archive --tag $(IMAGE_GENERIC_TAG) $(if $(BASE_IMAGE),--base-image $(BASE_IMAGE))

## Image size, start-up time to the first 200 prediction, memory, SIGTERM stop time.
image-measure: image
	$(BIN)/python deploy/measure.py --image $(IMAGE_TAG)
