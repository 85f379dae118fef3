# Two commands: `make dev` serves the API on :7071, `make test` runs lint and the suite.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
BIN := $(VENV)/bin
STAMP := $(VENV)/.installed

INFRA_VENV := .venv-infra
INFRA_STAMP := $(INFRA_VENV)/.installed

.PHONY: dev test lint lint-infra pgbouncer format migrate bench load package package-check clean swagger-ui

$(BIN)/python:
	$(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip

# Reinstall whenever a requirements file changes.
$(STAMP): $(BIN)/python requirements.txt requirements-dev.txt
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	touch $(STAMP)

# checkov lives in its own venv: its pins (packaging<24, boto3, ...) clash with the project's.
$(INFRA_STAMP): requirements-infra.txt
	rm -rf $(INFRA_VENV)
	$(PYTHON) -m venv $(INFRA_VENV)
	$(INFRA_VENV)/bin/pip install --quiet --disable-pip-version-check -r requirements-infra.txt
	touch $(INFRA_STAMP)

# A developer's own settings: the example's values plus a fresh random JWT secret.
local.settings.json: | $(BIN)/python
	$(BIN)/python -m devhost.local_settings local.settings.example.json $@

dev: $(STAMP) local.settings.json
	$(BIN)/python -m devhost

test: $(STAMP) lint lint-infra pgbouncer
	$(BIN)/pytest --cov --cov-report=term $(PYTEST_ARGS)

# The database tests run through a real PgBouncer (Debian's package; the tests start their
# own on a free port). Installed here when missing, so no machine or CI run skips them.
SUDO := $(if $(filter 0,$(shell id -u)),,sudo)
pgbouncer:
	@command -v pgbouncer >/dev/null || test -x /usr/sbin/pgbouncer || { \
	  $(SUDO) apt-get update -qq && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq pgbouncer; }

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/mypy

# checkov over infra/*.bicep; skips are inline, each with its reason. --skip-download keeps
# it offline (no guideline download from the vendor's platform).
lint-infra: $(INFRA_STAMP)
	$(INFRA_VENV)/bin/checkov --directory infra --framework bicep --quiet --compact --skip-download

format: $(STAMP)
	$(BIN)/ruff check --fix .
	$(BIN)/ruff format .

# `alembic upgrade head` against DB_URI (what a deploy pipeline runs with
# DB_MIGRATE_ON_STARTUP=false).
migrate: $(STAMP)
	$(BIN)/alembic upgrade head

bench: $(STAMP)
	$(BIN)/python -m bench

# A bounded headless locust run against `make dev` on LOAD_PORT (7160) with a stand-in AI
# provider; prints status counts, p50/p99 per route, peak memory and DB connections.
load: $(STAMP) local.settings.json
	$(BIN)/python -m bench.load

# The zip the pipeline deploys: wheels for Azure's Linux / CPython 3.11 / glibc 2.31, the app's
# git-tracked files minus .funcignore; then the package check (glibc, clean-interpreter
# index, no dev files, README licence tables).
PACKAGE := dist/axly-api.zip

package: $(STAMP)
	$(BIN)/python -m deploy.build $(PACKAGE)
	$(BIN)/python -m deploy.check $(PACKAGE)

package-check: $(STAMP)
	$(BIN)/python -m deploy.check $(PACKAGE)

clean:
	rm -rf $(VENV) $(INFRA_VENV) .pytest_cache .ruff_cache .mypy_cache .coverage htmlcov dist \
		tests/openapi/typescript/node_modules

# Swagger UI for /api/docs, served by the app itself (no CDN, works offline): only the files
# the page needs from the npm package swagger-ui-dist (Apache-2.0), with its licence and
# notices. Run after changing the version; commit the result.
SWAGGER_UI_VERSION := 5.35.0
SWAGGER_UI_DIR := api/static/swagger-ui
SWAGGER_UI_FILES := package.json LICENSE NOTICE swagger-ui.css swagger-ui-bundle.js \
	swagger-ui-bundle.js.LICENSE.txt
swagger-ui:
	rm -rf $(SWAGGER_UI_DIR) && mkdir -p $(SWAGGER_UI_DIR)
	tmp=$$(mktemp -d) && cd $$tmp \
	  && npm pack --silent swagger-ui-dist@$(SWAGGER_UI_VERSION) >/dev/null \
	  && tar -xzf swagger-ui-dist-$(SWAGGER_UI_VERSION).tgz \
	  && for f in $(SWAGGER_UI_FILES); do cp package/$$f $(CURDIR)/$(SWAGGER_UI_DIR)/; done \
	  && rm -rf $$tmp
