# BrainScan: `make run` starts everything on this machine; `make test` runs the whole suite.
SHELL := /bin/bash
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
RUN_STAMP := $(VENV)/.installed-run
DEV_STAMP := $(VENV)/.installed-dev
HOST ?= 127.0.0.1
PORT ?= 8000
WORKERS ?= $(shell nproc 2>/dev/null || echo 2)
POSTGRES_TEST_URL ?= postgres://postgres@127.0.0.1:5432/brainscan
PYTEST_ARGS ?=
# Test processes (pytest-xdist; each has its own database, broker prefix, media folder and ports).
TEST_PROCESSES ?= $(shell nproc 2>/dev/null || echo 2)
# The fast tier: no real worker processes, no browser, no shared dataset, no training, no subprocesses.
FAST_TIER := not worker and not browser and not dataset and not slow

# Some machines set PYTHONDONTWRITEBYTECODE: then every Python process compiles the project again, and
# every test process repeats pytest's assertion rewriting of its plugins (about 500 modules, 10 s each).
unexport PYTHONDONTWRITEBYTECODE

.PHONY: run test test-fast test-sqlite test-postgres docs migrate seed train-release benchmarks clean

$(PY):
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip

# --no-compile: pip would compile every module of every package (TensorFlow's thousands) at install; Python
# compiles the ones a process imports, once, when it first imports them (96 s -> 42 s for the test install).
$(RUN_STAMP): requirements.txt constraints.txt | $(PY)
	$(PY) -m pip install --quiet --no-compile -r requirements.txt -c constraints.txt
	touch $@

$(DEV_STAMP): requirements.txt requirements-dev.txt constraints.txt | $(PY)
	$(PY) -m pip install --quiet --no-compile -r requirements-dev.txt -c constraints.txt
	touch $@ $(RUN_STAMP)

migrate: $(RUN_STAMP)
	$(PY) manage.py migrate --noinput
	$(PY) manage.py collectstatic --noinput --verbosity 0

seed: migrate
	$(PY) manage.py seed_demo

## Web server and a real Celery worker (with the sweeper) on the embedded defaults; Ctrl-C stops both.
## A worker that dies (killed, out of memory) is started again after a second.
run: seed
	@echo "BrainScan on http://$(HOST):$(PORT)/  (Ctrl-C stops the web server and the worker)"
	@trap 'kill 0' INT TERM EXIT; \
	while true; do \
		$(PY) -m celery -A brainscan worker -B --schedule var/celerybeat-schedule -Q inference,default \
			--concurrency $(WORKERS) --loglevel INFO; \
		echo "The worker stopped (exit status $$?); starting it again"; sleep 1; \
	done & \
	$(PY) -m gunicorn brainscan.wsgi --bind $(HOST):$(PORT) --workers 2 --threads 4 --access-logfile - & \
	wait

## The whole suite on SQLite, then on PostgreSQL (when it is reachable; CI requires it).
test: $(DEV_STAMP) test-sqlite test-postgres

test-sqlite: $(DEV_STAMP)
	$(PY) -m pytest -n $(TEST_PROCESSES) $(PYTEST_ARGS)

## The fast tier on SQLite (services, selectors, forms, API, views, ml on the tiny model).
test-fast: $(DEV_STAMP)
	$(PY) -m pytest -n $(TEST_PROCESSES) -m "$(FAST_TIER)" $(PYTEST_ARGS)

## The documentation site (MkDocs Material) into site/; warnings are errors.
docs: $(DEV_STAMP)
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir site

test-postgres: $(DEV_STAMP)
	@if $(PY) -c "import socket; socket.create_connection(('127.0.0.1', 5432), 1)" 2>/dev/null; then \
		DATABASE_URL=$(POSTGRES_TEST_URL) $(PY) -m pytest -n $(TEST_PROCESSES) -m "not no_db" $(PYTEST_ARGS); \
	elif [ "$$BRAINSCAN_REQUIRE_SERVICES" = "1" ]; then \
		echo "PostgreSQL is required but not reachable on 127.0.0.1:5432"; exit 1; \
	else \
		echo "PostgreSQL is not reachable on 127.0.0.1:5432: skipping the PostgreSQL pass"; \
	fi

## Train the release recipe on both shared collections (about 1.5 h on 2 cores), then the external validation
## folds, each institution of TCGA-LGG left out in turn (shortened to 12 epochs each to fit a 2-core machine).
SHARED_DATA ?= ../shared/datasets
RELEASE_DATA = --data $(SHARED_DATA)/brain-mri --data $(SHARED_DATA)/tcga-lgg
# The release, then its folds as the release's were run: CS and FG shortened to 12 epochs, DU to 20 (docs/model.md).
train-release: $(RUN_STAMP)
	$(PY) manage.py train_model $(RELEASE_DATA)
	$(PY) manage.py train_model $(RELEASE_DATA) --leave-out-institution CS --epochs 12 --patience 5
	$(PY) manage.py train_model $(RELEASE_DATA) --leave-out-institution FG --epochs 12 --patience 5
	$(PY) manage.py train_model $(RELEASE_DATA) --leave-out-institution DU --epochs 20 --patience 8

benchmarks: $(DEV_STAMP)
	$(PY) -m benchmarks.inference
	$(PY) -m benchmarks.gate $(foreach c,brain-mri tcga-lgg,$(if $(wildcard $(SHARED_DATA)/$(c)),--data $(SHARED_DATA)/$(c)))
	$(PY) -m benchmarks.end_to_end
	$(PY) -m benchmarks.load
	$(PY) -m benchmarks.series

clean:
	rm -rf var/test var/cache staticfiles site
