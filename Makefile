# Two commands: `make run` starts the workbench, `make test` runs every test.
# Both create/refresh the virtual environment in .venv first.
# `make package` builds the Linux bundle and .deb into dist/ and smoke-tests them
# (packaging/README.md); `make package-native` is the quick CPU-specific variant.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
DEFAULT_MODEL := smollm2-135m
TEST_MODELS := smollm2-135m qwen2.5-coder-0.5b qwen2.5-coder-1.5b gemma3-270m qwen2.5-coder-1.5b-f16 \
	qwen2.5-coder-0.5b-moefied
# Packaging runs its heavy steps at this priority (and waits while a benchmark holds
# /tmp/decodelab-benchmark.lock). The compiled portable llama-cpp-python wheel is cached
# outside the checkout, so `make clean` and a fresh clone keep it:
# ${XDG_CACHE_HOME:-~/.cache}/decodelab/pkg-wheels (DECODELAB_PKG_WHEELS moves it).
NICE ?= 19
# llama.cpp's RPC backend lets `decodelab worker` serve layers and `--rpc` use them.
LLAMA_CMAKE_ARGS ?= -DGGML_RPC=on
# llama.cpp's AMX kernels crash some Sapphire Rapids machines (ggml-org/llama.cpp#20824; a
# segfault in ggml_backend_amx_mul_mat on the first decode, seen on this project's CI kind):
# on x86-64 llama.cpp is compiled without them (-march=native would enable them); decoding
# one token at a time gains nothing from AMX. The app also refuses AMX at run time.
ifeq ($(shell uname -m),x86_64)
LLAMA_CFLAGS ?= -mno-amx-tile -mno-amx-int8 -mno-amx-bf16
endif
LLAMA_BUILD_ENV = CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" CFLAGS="$(LLAMA_CFLAGS)" CXXFLAGS="$(LLAMA_CFLAGS)"

.PHONY: setup run test lint models package package-native clean

$(STAMP): pyproject.toml
	@$(PYTHON) -c 'import sys; assert sys.version_info >= (3, 11), "DecodeLab needs Python >= 3.11"' \
		|| { echo "Python >= 3.11 is needed (set PYTHON=...)"; exit 1; }
	@echo "==> virtual environment in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	@echo "==> installing DecodeLab and its test tools (the first install compiles llama.cpp: about 7 minutes on 2 cores)"
	$(LLAMA_BUILD_ENV) $(PY) -m pip install --progress-bar off -e '.[test]'
	@# pip reuses a wheel it built earlier whatever CMAKE_ARGS says: one built without the
	@# RPC backend (remote workers) or with AMX kernels is rebuilt here, once, without the cache.
	@$(PY) -c 'import llama_cpp, sys; info = llama_cpp.llama_print_system_info().decode(); \
		sys.exit(0 if llama_cpp.llama_supports_rpc() and "AMX" not in info else 1)' 2>/dev/null || { \
		echo "==> the installed llama-cpp-python lacks the RPC backend or has AMX kernels: rebuilding it (about 7 minutes)"; \
		$(LLAMA_BUILD_ENV) $(PY) -m pip install --progress-bar off --no-cache-dir \
			--force-reinstall --no-deps --no-binary llama-cpp-python "$$($(PY) -m pip show llama-cpp-python | sed -n 's/^Version: /llama-cpp-python==/p')"; }
	@touch $(STAMP)

setup: $(STAMP)

run: setup
	@echo "==> making sure the default model $(DEFAULT_MODEL) is installed"
	$(PY) -m app models fetch $(DEFAULT_MODEL)
	@echo "==> starting DecodeLab"
	$(PY) -m app gui --model $(DEFAULT_MODEL)

models: setup
	@echo "==> making sure the pinned test models are installed (downloaded once, then reused)"
	$(PY) -m app models fetch $(TEST_MODELS)

lint: setup
	@echo "==> ruff and mypy"
	$(PY) -m ruff check app tests benchmarks packaging packaging/decodelab.spec
	$(PY) -m mypy

test: lint models
	@echo "==> tests (core, engine, GUI offscreen, integration on the real models)"
	QT_QPA_PLATFORM=offscreen $(PY) -m pytest

# PORTABLE=1 (default): llama.cpp for any x86-64 CPU, compiled once (about 30 minutes),
# then reused from the wheel cache; the bundle and .deb are then smoke-tested.
# The system prerequisites are checked first, before `setup` (which can compile llama.cpp
# for .venv): a missing one fails in seconds with the apt-get line that fixes it.
package:
	@bash packaging/check_prereqs.sh
	@$(MAKE) --no-print-directory setup
	NICE=$(NICE) bash packaging/build_linux.sh
	nice -n $(NICE) bash packaging/smoke_test.sh

# Quick build with .venv's llama.cpp (-march=native): for this machine only, never hand out.
package-native:
	@bash packaging/check_prereqs.sh
	@$(MAKE) --no-print-directory setup
	PORTABLE=0 NICE=$(NICE) bash packaging/build_linux.sh
	nice -n $(NICE) bash packaging/smoke_test.sh

# Keeps the downloaded models and the portable wheel cache (both outside the checkout).
clean:
	rm -rf $(VENV) build dist .pytest_cache .mypy_cache .ruff_cache
