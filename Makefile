# wasinn: `make demo` runs the digits demo guest; `make test` installs everything and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# torch is pinned here (a CPU build on these machines); the plugins themselves declare ranges.
TORCH := torch==2.13.0
# llama-cpp-python builds llama.cpp from source (about 6 minutes on 2 cores, once: pip's wheel cache keeps the
# wheel, so later installs take seconds); a portable x86-64 CPU build. wasinn-llama declares a range.
LLAMA := llama-cpp-python[server]==0.3.36
LLAMA_CMAKE_ARGS := -DGGML_NATIVE=OFF -DGGML_AVX=ON -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON
export ZIG_GLOBAL_CACHE_DIR := $(CURDIR)/.zig-cache

# `make demo BACKEND=pytorch` (or openvino) runs the same guest on another backend plugin.
BACKEND ?= onnx
MODEL_onnx := examples/digits/model/digits.onnx
MODEL_pytorch := examples/digits/model/digits.pt2
MODEL_openvino := examples/digits/model/digits.xml:examples/digits/model/digits.bin
PLUGIN_onnx := -e plugins/onnx
PLUGIN_pytorch := -e plugins/pytorch $(TORCH)
PLUGIN_openvino := -e plugins/openvino
PLUGIN_llama := -e plugins/llama $(LLAMA) -e conformance $(TORCH)
DEMO_FLAGS = --dir examples/digits/images::/images --nn-preload digits:$(BACKEND):cpu:$(MODEL_$(BACKEND))
# `make demo BACKEND=llama`: a chat guest on a tiny GGUF model trained here (python -m wasinn_conformance.gguf_models)
LLM_MODEL = $$($(BIN)/python -m wasinn_conformance.gguf_models --out .cache/llm)

LINTED := wasinn_core plugins conformance tests guests examples benchmarks
REPORTS := .reports

.PHONY: demo test lint typecheck pytest conformance site bench-check docs bench bench-llm llm-conformance fuzz soak figures \
        guests model clean dist gpu-wheels gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip

$(VENV)/.demo-%: $(BIN)/python pyproject.toml plugins/%/pyproject.toml
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e . $(PLUGIN_$*)
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml plugins/*/pyproject.toml conformance/pyproject.toml \
              examples/plugin-template/pyproject.toml
	CMAKE_ARGS="$(LLAMA_CMAKE_ARGS)" $(PIP) install -e '.[dev]' -e plugins/onnx -e plugins/pytorch -e plugins/openvino \
	    $(TORCH) onnxscript onnx -e 'plugins/remote[loopback]' -e 'conformance[wasmtime]' -e examples/plugin-template \
	    -e plugins/llama '$(LLAMA)'
	touch $@

demo: $(VENV)/.demo-$(BACKEND)  ## classify the shipped digit images in a wasm guest (default: ONNX Runtime)
ifeq ($(BACKEND),llama)
	$(BIN)/wasinn run --dir .:. --nn-preload default:GGML:CPU:$(LLM_MODEL) guests/wasm/llama.wasm --chat \
	    default 'Who are you?'
else
	$(BIN)/wasinn run $(DEMO_FLAGS) guests/wasm/digits.wasm /images
endif

test: $(VENV)/.dev lint typecheck pytest conformance site bench-check gpu-check  ## install everything, lint, type-check, run every suite

lint: $(VENV)/.dev
	$(BIN)/ruff check $(LINTED)
	$(BIN)/ruff format --check $(LINTED)

typecheck: $(VENV)/.dev
	$(BIN)/mypy

pytest: $(VENV)/.dev
	$(BIN)/python -m pytest tests examples/plugin-template/tests
	# the ABI on wasmtime-py's public API too (the default is the fast path of unchecked C callbacks)
	WASINN_ABI_PATH=public $(BIN)/python -m pytest -q tests/test_abi.py tests/test_rust_abi.py tests/test_fuzz.py \
	    tests/test_reliability.py tests/test_cli.py

# The conformance suite on every in-tree backend and the template plugin (known deviations are in
# wasinn.toml; guest models run in worker processes by default, and the second run isolates named ones
# too), then on wasmtime's own CLI (its known failures ship with the suite). Reports in $(REPORTS)/.
# The outcomes the docs show (docs/results/) must still be what a fresh run gives (else: make figures).
CONFORMANCE_BACKENDS := --backend onnxruntime --backend pytorch --backend openvino --backend onnxref --backend llama
EXPECTATIONS := conformance/wasinn_conformance/expectations/wasinn.toml
conformance: $(VENV)/.dev
	mkdir -p $(REPORTS)
	$(BIN)/wasinn conformance -q $(CONFORMANCE_BACKENDS) --expectations $(EXPECTATIONS) \
	    --json $(REPORTS)/conformance.json
	# again with every model, guest-supplied and named, in a confined worker process
	$(BIN)/wasinn conformance -q $(CONFORMANCE_BACKENDS) --expectations $(EXPECTATIONS) \
	    --config conformance/configs/isolated.toml --json $(REPORTS)/conformance-isolated.json
	$(BIN)/wasinn conformance -q --runtime wasmtime --json $(REPORTS)/conformance-wasmtime.json
	$(BIN)/python -m tests.figures --compare $(REPORTS)/conformance.json docs/results/conformance-wasinn.json
	$(BIN)/python -m tests.figures --compare $(REPORTS)/conformance-isolated.json docs/results/conformance-wasinn.json
	$(BIN)/python -m tests.figures --compare $(REPORTS)/conformance-wasmtime.json \
	    docs/results/conformance-wasmtime.json

# The docs site must build with no warning (a broken link, a missing page or API object fails).
site: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d $(REPORTS)/site

# The benchmark runner in its quick mode, to check that it works (never a timed assertion).
bench-check: $(VENV)/.dev
	$(BIN)/python -m benchmarks --quick -q --out $(REPORTS)/performance-quick.md
	$(BIN)/python -m benchmarks.llm --quick --out $(REPORTS)/llm-benchmark-quick.json

# The GPU check (docs/backends/pytorch.md): here every GPU part is skipped with its reason and the rest
# runs, from wasinn installed the way a GPU machine installs it (the carried wheels, its own torch).
GPU_WHEELS := .gpu-wheels
gpu-wheels: $(BIN)/python  ## download the wheels a GPU machine without network lacks into .gpu-wheels/
	$(BIN)/python -m benchmarks.gpu --prepare $(GPU_WHEELS)

gpu-check: $(VENV)/.dev gpu-wheels  ## the GPU check; its report in .reports/gpu/
	$(BIN)/python -m benchmarks.gpu --install $(GPU_WHEELS) --out $(REPORTS)/gpu

docs: $(VENV)/.dev  ## serve the docs site on http://127.0.0.1:8000
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs serve

bench: $(VENV)/.dev  ## the full benchmark (minutes): rewrites docs/performance.md and its plot
	$(BIN)/python -m benchmarks --out docs/performance.md

bench-llm: $(VENV)/.dev  ## the LLM benchmark (a minute): rewrites docs/results/llm-benchmark.json
	$(BIN)/python -m benchmarks.llm --rounds 15 --out docs/results/llm-benchmark.json

llm-conformance: $(VENV)/.dev  ## the LLM conformance layer on llama and on remote (loopback server): docs/results/
	$(BIN)/python -m benchmarks.llm_conformance --out docs/results/llm-conformance.json

# The long runs write the result files the docs' figures are rendered from (docs/results/), then the figures.
fuzz: $(VENV)/.dev  ## long fuzz runs: 1,000,000 hostile host calls, 1,000 mutated models per format
	$(BIN)/python -m tests.fuzzing --calls $${FUZZ_CALLS:-1000000} --seed $${FUZZ_SEED:-1} --models 1000 \
	    --json docs/results/fuzz.json
	$(BIN)/python -m tests.figures

soak: $(VENV)/.dev  ## the full soak: 10,000 cycles and 1,000 store lifetimes per backend
	$(BIN)/python -m tests.soak --cycles 10000 --lifetimes 1000 --json docs/results/soak.json
	$(BIN)/python -m tests.figures

figures: $(VENV)/.dev  ## rerun the conformance suite into docs/results/ and rewrite the docs' figures
	$(BIN)/wasinn conformance -q $(CONFORMANCE_BACKENDS) --expectations $(EXPECTATIONS) \
	    --json docs/results/conformance-wasinn.json
	$(BIN)/wasinn conformance -q --runtime wasmtime --json docs/results/conformance-wasmtime.json
	$(BIN)/python -m tests.figures

guests: $(VENV)/.dev  ## rebuild guests/wasm/*.wasm from guests/src/*.c with zig
	$(BIN)/python guests/build.py

model: $(VENV)/.dev  ## retrain and re-export the demo model and images
	$(BIN)/python examples/digits/train.py

# wasinn's distributions are not on a package index: `make dist` builds a wheel of each (core, every plugin,
# the conformance suite, the template plugin) for `pip install --find-links dist wasinn-core wasinn-onnx ...`.
DIST ?= dist
dist: $(BIN)/python  ## wheels of every wasinn distribution in dist/
	rm -rf $(DIST) && mkdir -p $(DIST)
	$(PIP) wheel --no-deps -w $(DIST) ./ $(wildcard plugins/*/) ./conformance/ ./examples/plugin-template/
	@ls $(DIST)

clean:
	rm -rf $(VENV) .zig-cache .pytest_cache .mypy_cache .ruff_cache
