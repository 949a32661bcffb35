# wasinn: `make demo` runs the digits demo guest; `make test` installs everything and runs the suite.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
PIP := $(BIN)/python -m pip --disable-pip-version-check -q
# torch is pinned here (a CPU build on these machines); the plugins themselves declare ranges.
TORCH := torch==2.13.0
export ZIG_GLOBAL_CACHE_DIR := $(CURDIR)/.zig-cache

# `make demo BACKEND=pytorch` (or openvino) runs the same guest on another backend plugin.
BACKEND ?= onnx
MODEL_onnx := examples/digits/model/digits.onnx
MODEL_pytorch := examples/digits/model/digits.pt2
MODEL_openvino := examples/digits/model/digits.xml:examples/digits/model/digits.bin
PLUGIN_onnx := -e plugins/onnx
PLUGIN_pytorch := -e plugins/pytorch $(TORCH)
PLUGIN_openvino := -e plugins/openvino
DEMO_FLAGS = --dir examples/digits/images::/images --nn-preload digits:$(BACKEND):cpu:$(MODEL_$(BACKEND))

LINTED := wasinn_core plugins conformance tests guests examples benchmarks
REPORTS := .reports

.PHONY: demo test lint typecheck pytest conformance site bench-check docs bench fuzz soak guests model clean dist \
        gpu-wheels gpu-check

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(PIP) install -U pip

$(VENV)/.demo-%: $(BIN)/python pyproject.toml plugins/%/pyproject.toml
	$(PIP) install -e . $(PLUGIN_$*)
	touch $@

$(VENV)/.dev: $(BIN)/python pyproject.toml plugins/*/pyproject.toml conformance/pyproject.toml \
              examples/plugin-template/pyproject.toml
	$(PIP) install -e '.[dev]' -e plugins/onnx -e plugins/pytorch -e plugins/openvino $(TORCH) onnxscript onnx \
	    -e 'plugins/remote[loopback]' -e 'conformance[wasmtime]' -e examples/plugin-template
	touch $@

demo: $(VENV)/.demo-$(BACKEND)  ## classify the shipped digit images in a wasm guest (default: ONNX Runtime)
	$(BIN)/wasinn run $(DEMO_FLAGS) guests/wasm/digits.wasm /images

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
# wasinn.toml); guest models run in worker processes by default, and the second run isolates named ones too, then on wasmtime's own CLI (its known failures ship with the suite). Reports in $(REPORTS)/.
conformance: $(VENV)/.dev
	mkdir -p $(REPORTS)
	$(BIN)/wasinn conformance -q --backend onnxruntime --backend pytorch --backend openvino --backend onnxref \
	    --expectations conformance/wasinn_conformance/expectations/wasinn.toml --json $(REPORTS)/conformance.json
	# again with every model, guest-supplied and named, in a confined worker process
	$(BIN)/wasinn conformance -q --backend onnxruntime --backend pytorch --backend openvino --backend onnxref \
	    --expectations conformance/wasinn_conformance/expectations/wasinn.toml --config conformance/configs/isolated.toml \
	    --json $(REPORTS)/conformance-isolated.json
	$(BIN)/wasinn conformance -q --runtime wasmtime --json $(REPORTS)/conformance-wasmtime.json

# The docs site must build with no warning (a broken link, a missing page or API object fails).
site: $(VENV)/.dev
	NO_MKDOCS_2_WARNING=1 $(BIN)/mkdocs build --strict --quiet -d $(REPORTS)/site

# The benchmark runner in its quick mode, to check that it works (never a timed assertion).
bench-check: $(VENV)/.dev
	$(BIN)/python -m benchmarks --quick -q --out $(REPORTS)/performance-quick.md

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

fuzz: $(VENV)/.dev  ## long fuzz runs: 1,000,000 hostile host calls, 1,000 mutated models per format
	$(BIN)/python -m tests.fuzzing --calls $${FUZZ_CALLS:-1000000} --seed $${FUZZ_SEED:-1} --models 1000 2>/dev/null

soak: $(VENV)/.dev  ## the full soak: 10,000 cycles and 1,000 store lifetimes per backend
	$(BIN)/python -m tests.soak --cycles 10000 --lifetimes 1000 2>/dev/null

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
