# The README's two commands: `make demo` and `make test`. Everything else is set up from here.
PY ?= python3
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed-$(shell cat pyproject.toml Makefile | cksum | cut -d' ' -f1)

.PHONY: install demo test bench image clean

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/pip install -q --upgrade pip

# torch first, pinned to the build this machine class has on disk (a newer one would download GBs);
# then the project. Ultralytics pulls opencv-python (GUI); the edge wants opencv-python-headless:
# both write the same cv2/ folder, so remove both and reinstall headless last.
$(STAMP): pyproject.toml Makefile | $(BIN)/python
	$(BIN)/pip install -q "torch==2.14.1" "torchvision==0.29.1"
	$(BIN)/pip install -q -e ".[all,dev]"
	$(BIN)/pip uninstall -q -y opencv-python opencv-python-headless
	$(BIN)/pip install -q "opencv-python-headless>=4.8"
	rm -f $(VENV)/.installed-*
	touch $(STAMP)

install: $(STAMP)

demo: install
	$(BIN)/python -m edge_mlla.demo

# two workers, one test file each (module fixtures are built once): much of the suite waits on subprocesses,
# Ray, pip and single-threaded graph passes, so 2 workers on 2 cores take ~4.5 min where one took ~9.5
# then the precision policy's other CPU branch: the OpenVINO and Detector tests again with the capability set this
# host does not have (EDGE_MLLA_CAPS=avx512_bf16 on an AVX2 CPU, avx2 on a BF16/AMX one), so every CI machine runs both;
# simulating AVX2 on an AVX-512 host also caps OpenVINO's oneDNN kernels at AVX2 (ONEDNN_MAX_CPU_ISA), so those
# tests really run AVX2 code (a few of OpenVINO's own elementwise kernels stay AVX-512)
test: install
	$(BIN)/python -m pytest -q -n 2 --dist loadfile tests
	other=$$($(BIN)/python -m edge_mlla.runtimes.capabilities --other); \
	if [ "$$other" = avx2 ]; then export ONEDNN_MAX_CPU_ISA=AVX2; fi; \
	EDGE_MLLA_CAPS=$$other $(BIN)/python -m pytest -q -n 2 --dist loadfile tests/test_runtimes.py tests/test_detector.py tests/test_precision.py

# release check, not part of `make test` (needs a Docker engine; ~10 min the first time): build the slim image,
# run its default command, check the video it writes, that it runs as non-root and has no torch. See .ci/image.
image:
	bash .ci/image

bench: install
	$(BIN)/python benchmarks/bench_mlla_vs_psa.py

clean:
	rm -rf $(VENV) runs build *.egg-info
