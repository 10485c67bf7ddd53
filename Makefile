# twrl-exp: every target sets up what it needs first (a .venv in this folder).
PYTHON ?= python3
VENV ?= .venv
TORCH_SPEC ?= torch==2.13.0
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

.DEFAULT_GOAL := help
.PHONY: help install train test test-fast lint ui leaderboard notebook bench clean cluster-up cluster-down cluster-status

help:  ## List the targets
	@grep -E '^[a-z-]+:.*## ' $(MAKEFILE_LIST) | awk -F':.*## ' '{printf "  make %-10s %s\n", $$1, $$2}'

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet "$(TORCH_SPEC)"
	$(BIN)/python -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

install: $(STAMP)  ## Create .venv with torch (TORCH_SPEC, default torch==2.13.0 CPU) and twrl-exp

train: $(STAMP)  ## Train the default agent (REINFORCE on CartPole-v1); ARGS="..." adds overrides
	$(BIN)/python train.py $(ARGS)

test: $(STAMP)  ## The whole test suite, learning checks and cluster tests included (what CI runs)
	$(BIN)/python -m pytest -n 2 --dist loadgroup --no-loadscope-reorder

test-fast: $(STAMP)  ## In-process tests only (tests/unit, tests/config; < 1 min): after every edit
	$(BIN)/python -m pytest -n 2 --dist worksteal tests/unit tests/config

lint: $(STAMP)  ## ruff, mypy and the import-layering contract
	$(BIN)/ruff check src tests benchmarks train.py
	$(BIN)/ruff format --check src tests benchmarks train.py
	$(BIN)/mypy src
	$(BIN)/lint-imports

ui: $(STAMP)  ## MLflow UI on the project's store (http://127.0.0.1:5000)
	$(BIN)/mlflow ui --backend-store-uri sqlite:///$(CURDIR)/mlflow.db

notebook: $(STAMP)  ## JupyterLab on notebooks/analysis.ipynb (ARGS="--port=8889 ...")
	$(BIN)/jupyter lab notebooks/analysis.ipynb $(if $(filter 0,$(shell id -u)),--allow-root) $(ARGS)

bench: $(STAMP)  ## Benchmarks vs the env's speed limit and SB3 -> benchmarks/RESULTS*.md (DEEP_ARGS="--only ppo,dqn")
	$(BIN)/python -m pip install --quiet -e ".[bench]"
	$(BIN)/python benchmarks/bench.py $(ARGS)
	$(BIN)/python benchmarks/sweeps.py
	$(BIN)/python benchmarks/deep.py $(DEEP_ARGS)

leaderboard: $(STAMP)  ## Ranked agents per env from the MLflow store (ARGS="--env CartPole-v1 ...")
	$(BIN)/python -m twrl_exp.leaderboard $(ARGS)

cluster-up: $(STAMP)  ## PostgreSQL + MLflow server + Ray head and worker here (.cluster/); prints the URIs
	$(BIN)/python -m twrl_exp.cluster up $(ARGS)

cluster-down: $(STAMP)  ## Stop every service cluster-up started (keeps .cluster/: studies, runs, artifacts)
	$(BIN)/python -m twrl_exp.cluster down $(ARGS)

cluster-status: $(STAMP)  ## Which cluster services run
	$(BIN)/python -m twrl_exp.cluster status $(ARGS)

clean:  ## Remove caches and Hydra outputs (keeps .venv, mlflow.db and mlruns/)
	rm -rf .pytest_cache .mypy_cache .ruff_cache outputs multirun
	find . -name __pycache__ -not -path "./$(VENV)/*" -exec rm -rf {} +
