# Keel: `make run` serves the API on http://127.0.0.1:8000, `make test` runs every test.
# Both create .venv on first use (Python 3.11+ is all they need) and install the locked versions.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
UV_VERSION := 0.13.8
export UV_PROJECT_ENVIRONMENT := $(VENV)

.PHONY: install run test lint fuzz bench drills migration format check clean

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed: pyproject.toml uv.lock | $(BIN)/python
	$(BIN)/python -m pip install --quiet "uv==$(UV_VERSION)"
	$(BIN)/uv sync --frozen --inexact --quiet
	@touch $@

install: $(VENV)/.installed ## Create .venv and install the locked dependencies

run: install ## Migrate the database, then serve on http://127.0.0.1:8000
	$(BIN)/python -m app migrate
	$(BIN)/python -m app serve --host 127.0.0.1 --port 8000

test: install ## The whole test suite (PostgreSQL/Redis legs when TEST_DATABASE_URL/TEST_REDIS_URL are set)
	$(BIN)/python -m pytest --cov

K8S_MANIFESTS = $(filter-out %/kustomization.yaml,$(wildcard deploy/k8s/*.yaml deploy/k8s/*/*.yaml))

lint: install ## ruff, formatting, mypy --strict, import-layer contracts, hadolint, Kubernetes schemas, alert rules
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy app
	$(BIN)/lint-imports
	$(BIN)/hadolint Dockerfile
	$(BIN)/kubernetes-validate --strict --quiet $(K8S_MANIFESTS)
	@command -v promtool >/dev/null || { echo "promtool missing: apt-get install prometheus" >&2; exit 1; }
	promtool check rules deploy/observability/alerts.yml

fuzz: install ## Schemathesis, all checks and phases, against a live server, as a superuser and as a user
	$(BIN)/python scripts/fuzz.py --as superuser
	$(BIN)/python scripts/fuzz.py --as user

bench: install ## Keel (production server) vs ../shared/bench's ceiling with wrk; writes docs/benchmarks.md
	$(BIN)/python bench/bench.py $(BENCH_ARGS)

drills: install ## Resilience drills (CONTRACT.md section 7) on throwaway PostgreSQL and Redis
	scripts/drills

migration: install ## A new migration from the models: make migration name=add_orders (migrates first)
	@test -n "$(name)" || { echo 'usage: make migration name=add_orders'; exit 2; }
	$(BIN)/python -m app migrate
	$(BIN)/alembic revision --autogenerate -m "$(name)"

format: install
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

check: lint test

clean:
	rm -rf $(VENV) .pytest_cache .mypy_cache .ruff_cache keel.db keel.db-*
