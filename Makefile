# `make test` and `make demo` work on a fresh machine with nothing but Python 3.10+.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
export TF_CPP_MIN_LOG_LEVEL ?= 2

.PHONY: install demo demo-fine-tune lint test test-slow test-torch test-onnx test-openvino benchmark study study-quick clean

install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e ".[test]"
	touch $(STAMP)

## demo: generate the shapes dataset, train on it (about 5-8 minutes on 2 CPU cores), evaluate, draw predictions
demo: $(STAMP)
	$(PY) -m keras_retinanet.cli.demo

## demo-fine-tune: a detector trained on generated shapes fine-tuned on other shapes (model.init_from), beside the
## same model from scratch, with the settings that matter varied (about 2.5 minutes on 2 CPU cores)
demo-fine-tune: $(STAMP)
	$(PY) -m keras_retinanet.cli.fine_tuning_demo

## lint: ruff (pyflakes, pycodestyle's errors and lines of at most 120 characters, pyproject.toml's [tool.ruff]) over the package, tests and bin/
lint: $(STAMP)
	$(PY) -m ruff check keras_retinanet tests bin

## test: the default suite (tiny models, small images; about 10 minutes of pytest on 2 cores)
test: $(STAMP)
	$(PY) -m pytest -q --durations=15

## test-slow: the long tests (killed runs and workers, the benchmark's small run, full-size backbones, every shipped
## config under mirrored, the study's run, mixed precision, determinism, fine-tuning against scratch; about 17 minutes),
## which .ci/run runs too
test-slow: $(STAMP)
	$(PY) -m pytest -q -m slow --durations=15

## test-torch: parity with torchvision's RetinaNets and ResNets, and the benchmark's fit_budget path beside
## torchvision; installs the optional [torch] extra (torch and torchvision, large) into the venv first
test-torch: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,torch]"
	$(PY) -m pytest -q -m torch --durations=15

## test-onnx: the ONNX export with its NMS inside, run by onnxruntime in a fresh process beside the SavedModel;
## installs the optional [onnx] extra (onnx, onnxruntime, tf2onnx) into the venv first
test-onnx: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,onnx]"
	$(PY) -m pytest -q -m onnx --durations=15

## test-openvino: the OpenVINO export (float32 and NNCF int8) run by OpenVINO in a fresh process beside the
## SavedModel; installs the optional [openvino] extra (openvino, nncf) into the venv first
test-openvino: $(STAMP)
	$(PY) -m pip install --quiet -e ".[test,openvino]"
	$(PY) -m pytest -q -m openvino --durations=15

## benchmark: speed and memory beside torchvision and KerasHub and the hardware's floor (see bin/benchmark --help);
## installs the optional [torch] and [keras_hub] extras (large) into the venv first
benchmark: $(STAMP)
	$(PY) -m pip install --quiet -e ".[torch,keras_hub]"
	$(PY) bin/benchmark

## study: the paper's ablations at CPU scale, and what decides FL against the best CE (bin/study; within 3.5
## hours on 2 CPU cores, resumable), report in runs/study/report.md; study-quick: the first row of each table on
## smaller images (within 15 minutes)
study: $(STAMP)
	$(PY) bin/study

study-quick: $(STAMP)
	$(PY) bin/study --quick

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache
