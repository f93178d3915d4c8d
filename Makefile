# lpa: `make quickstart` runs the whole chain on the embedded digits dataset (CPU, minutes);
# `make test` runs the test suite. Both create .venv from requirements.txt when it is missing.
PY := .venv/bin/python
DVC := .venv/bin/dvc
# stage commands call `python`: make it the project's
export PATH := $(CURDIR)/.venv/bin:$(PATH)
# extra Hydra overrides for quickstart, e.g. OVERRIDES="attention.compat=dp train.epochs=5"
OVERRIDES ?=

.PHONY: venv test quickstart bench gpu-check models params settings cifar-cpu table clean-venv

venv: .venv/.installed

.venv/.installed: requirements.txt
	test -x $(PY) || python3 -m venv .venv
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -r requirements.txt
	touch $@

# two workers (pytest-xdist), a test file each at a time: the DVC end-to-end files are mostly
# process start-up and DVC bookkeeping, single-threaded, so two at once use both cores. Files are
# handed out in the order tests/conftest.py sets (the long DVC files first), not xdist's own.
test: venv
	$(PY) -m pytest -q -n 2 --dist loadfile --no-loadscope-reorder

# The quick suite (conf/suite/quick.yaml) recorded as a DVC experiment.
quickstart: venv
	@git config user.name >/dev/null && git config user.email >/dev/null || { echo "error: dvc exp run records each experiment as a git commit: set git config user.name and user.email first" >&2; exit 1; }
	$(DVC) exp run -S suite=quick $(foreach o,$(OVERRIDES),-S $(o))
	@echo
	@echo "results table:   reports/quick/results.md"
	@echo "metrics:         reports/quick/summary.json, reports/quick/runs/*/metrics.json"
	@echo "attention maps:  $$(ls reports/quick/runs/*/attention/*.png 2>/dev/null | tr '\n' ' ')"
	@echo "experiments:     dvc exp show   |   against the committed baseline: dvc metrics diff"

bench: venv
	$(PY) -m lpa.tools.bench --model vgg-att2 --width 0.5 --batch-size 128 --steps 8 --warmup 2 --precision bf16 --compare-reference

# what only a GPU can show (lpa/tools/gpu_check.py), at most 8 minutes on one: environment, bench eager vs
# compiled, one epoch of the real stages at full width on the CIFAR-10 JPEG copy, FGSM, predict, checkpoint,
# DDP where there are 2 GPUs -> reports/gpu-check/report.md and .json. CPU=1: the same steps, tiny, on the CPU
gpu-check: venv
	$(PY) -m lpa.tools.gpu_check $(if $(CPU),--cpu)

models: venv
	$(PY) -m lpa.models

# params.yaml is conf/ composed with the default (paper) suite; DVC recomposes it on `dvc exp run`
params: venv
	$(PY) -m lpa.config compose

# every setting of params.yaml: allowed values, library default, help
settings: venv
	$(PY) -m lpa.config settings

# the CPU-scale real-data suite (conf/suite/cifar-cpu.yaml): CIFAR-10 (the JPEG copy), transfer to Caltech-101,
# segmentation on Weizmann Horse; 153 min measured on 2 cores (AMD EPYC). Its three archives must be in data/raw/
CIFAR_CPU_ARCHIVES := cifar10-jpeg-q75.tar.gz caltech101.tar.gz weizmann-horse.tar.gz
cifar-cpu: venv
	@missing="$(strip $(foreach a,$(CIFAR_CPU_ARCHIVES),$(if $(wildcard data/raw/$(a)),,$(a))))"; \
	test -z "$$missing" || { echo "error: not in data/raw/: $$missing; copy or link your copy of each into data/raw/ (docs/data.md)" >&2; exit 1; }
	$(DVC) exp run -S suite=cifar-cpu $(foreach o,$(OVERRIDES),-S $(o))

# every pending train stage of the current params across devices, then evaluation and report
# (lpa/tools/launch.py), e.g. make table DEVICES=0,1,2,3 SLOTS=1; DEVICES=cpu on a machine without GPUs
DEVICES ?= cpu
SLOTS ?= 1
table: venv
	$(PY) -m lpa.tools.launch --devices $(DEVICES) --slots-per-device $(SLOTS)

clean-venv:
	rm -rf .venv
