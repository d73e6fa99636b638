# wealthmetrics: `make run` serves the dashboard, `make test` runs the whole suite.
# Both set up everything first: .venv from requirements, front-end packages from package.json.

PYTHON ?= python3
VENV := .venv
BIN := $(VENV)/bin
HOST ?= 127.0.0.1
PORT ?= 8000
WEB ?= 1
# Connections the kernel queues for daphne before it accepts them: a restart's reconnect storm
# arrives at once (capped by net.core.somaxconn).
BACKLOG ?= 4096
# The demo scrapers run beside `make run` on the embedded default, never against a DATABASE_URL.
DEMO ?= $(if $(DATABASE_URL),0,1)
export HOST PORT BACKLOG

.PHONY: run test lint typecheck jstest pytest unit deps dev-deps system-deps frontend stack bench-ingest clean

run: deps frontend
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py first_run --url http://$(HOST):$(PORT)/
	@# One shell: the demo's parent becomes daphne (exec), and the demo stops when daphne does.
	@if [ "$(DEMO)" = 1 ]; then \
	  mkdir -p $${VAR_DIR:-var}; \
	  echo "Demo: simulated scrapers send live traffic, with a fault every few minutes to watch alerts fire and resolve (DEMO=0 turns them off); what they do (the backfill, each fault's start and end): $${VAR_DIR:-var}/demo.log"; \
	  $(BIN)/python manage.py simulate_scrapers --url http://$(HOST):$(PORT)/ --wait-for-server 60 --backfill-days 7 --faults demo \
	    --exit-with-parent >$${VAR_DIR:-var}/demo.log 2>&1 & \
	fi; \
	echo "HTTP access log: $${VAR_DIR:-var}/access.log"; \
	exec $(BIN)/daphne -e tcp:port=$(PORT):interface=$(subst :,\:,$(HOST)):backlog=$(BACKLOG) --access-log $${VAR_DIR:-var}/access.log \
	  wealthmetrics.asgi:application

# daphne, a celery worker and beat under honcho (Procfile), against DATABASE_URL and REDIS_URL.
stack: deps frontend
	@test -n "$$REDIS_URL" || { echo "make stack runs several processes that talk through Redis: set REDIS_URL (and DATABASE_URL)"; exit 1; }
	@test -n "$$DATABASE_URL" || echo "DATABASE_URL is not set: using SQLite under var/ (fine to try, not for production)"
	$(BIN)/python manage.py migrate --noinput -v0
	$(BIN)/python manage.py first_run --url http://$(HOST):$(PORT)/
	exec $(BIN)/honcho start -f Procfile -p $(PORT) -c web=$(WEB)

test: dev-deps frontend lint typecheck jstest pytest

lint: dev-deps
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .
	$(BIN)/lint-imports --no-cache

typecheck: dev-deps
	$(BIN)/mypy

jstest:
	node --test tests/js/

pytest: dev-deps frontend
	$(BIN)/pytest $(PYTEST_ARGS)

# the fast half: no database, socket or browser (tests/unit), in a few seconds
unit: dev-deps
	$(BIN)/pytest tests/unit $(PYTEST_ARGS)

deps: $(VENV)/.runtime-installed
dev-deps: $(VENV)/.dev-installed

$(VENV)/.runtime-installed: requirements.txt
	@bin/system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements.txt
	@touch $@

$(VENV)/.dev-installed: requirements.txt requirements-dev.txt
	@bin/system-deps
	@test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@touch $@ $(VENV)/.runtime-installed

frontend: node_modules/.installed

node_modules/.installed: package.json package-lock.json
	@command -v npm >/dev/null || { echo "npm is needed for the dashboard's Chart.js (apt-get install nodejs npm)"; exit 1; }
	npm ci --no-audit --no-fund --loglevel=error
	@touch $@

system-deps:
	@bin/system-deps

clean:
	rm -rf $(VENV) node_modules staticfiles var/test_*.sqlite3
