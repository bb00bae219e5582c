# The gateway's commands. `make run` and `make test` work on a fresh machine with Python 3.11+.
PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
INSTALLED := $(VENV)/.installed
PIP := $(BIN)/python -m pip --disable-pip-version-check -q

.PHONY: run test bench bench-ab bench-profile bench-tls bench-quick bench-scale cluster cluster-hybrid soak lint format install clean image

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)

$(INSTALLED): pyproject.toml | $(BIN)/python
	$(PIP) install --upgrade pip setuptools wheel
	$(PIP) install -e ".[dev,bench]"
	touch $(INSTALLED)

install: $(INSTALLED)

## Run the whole gateway on this machine with embedded defaults (Ctrl-C stops everything).
run: $(INSTALLED)
	DEBUG=$${DEBUG:-1} $(BIN)/python -m gateway_project.dev.devrun

## Install the dev dependencies and run the whole suite (REDIS_URL / DATABASE_URL for real servers).
test: $(INSTALLED)
	@$(BIN)/python -m gateway_project.dev.browser_check
	$(BIN)/python -m pytest $(PYTEST_ARGS)

## Side-by-side benchmark (SPEC section 13); `make bench-quick` for a 2-minute run.
bench: $(INSTALLED)
	$(BIN)/python -m bench.run $(BENCH_ARGS)

bench-quick: $(INSTALLED)
	$(BIN)/python -m bench.run --quick $(BENCH_ARGS)

## The registry at scale (SPEC section 23): 20,000 services, 5,000 tenants, 100,000 API keys on
## PostgreSQL (BENCH_SCALE_DATABASE_URL; its scale-* rows are replaced); --quick for a tenth.
bench-scale: $(INSTALLED)
	$(BIN)/python -m bench.run --scale $(BENCH_ARGS)

## A/B of the server (uvicorn / granian), upstream client (aiohttp / pyreqwest) and Redis client.
bench-ab: $(INSTALLED)
	$(BIN)/python -m bench.ab $(BENCH_ARGS)

## The full pipeline over plain HTTP/1.1, TLS and HTTP/2 (h2load: sudo apt-get install nghttp2-client).
bench-tls: $(INSTALLED)
	$(BIN)/python -m bench.tls $(BENCH_ARGS)

## py-spy on one worker serving the full pipeline under wrk (GATEWAY_SERVER / UPSTREAM_CLIENT pick).
bench-profile: $(INSTALLED)
	PATH=$(CURDIR)/$(BIN):$$PATH $(BIN)/python -m bench.profile $(BENCH_ARGS)

## Two gateway instances, a worker, beat and a round-robin front on :8080 (needs Redis + PostgreSQL).
cluster: $(INSTALLED)
	$(BIN)/python -m gateway_project.dev.cluster

# One control plane (admin, API, logins) and two data planes without a database (SPEC 18).
cluster-hybrid: $(INSTALLED)
	CLUSTER_MODE=hybrid $(BIN)/python -m gateway_project.dev.cluster

## The full 5-minute soak (CI runs a 60-second form inside `make test`).
soak: $(INSTALLED)
	SOAK_SECONDS=$${SOAK_SECONDS:-300} $(BIN)/python -m pytest tests/reliability/test_soak.py -q

## The container image with podman (deploy/build_image.py), from a local Debian base made with
## debootstrap; `make image BASE_IMAGE=python:3.11-slim` for the published base. Reused when unchanged.
image:
	$(PYTHON) deploy/build_image.py $(if $(BASE_IMAGE),--base $(BASE_IMAGE))

## Ruff, then the layer contracts of SPEC section 17 (pyproject.toml [tool.importlinter]).
lint: $(INSTALLED)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports

format: $(INSTALLED)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) var .pytest_cache
