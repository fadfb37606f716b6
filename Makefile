# meteo_assets — every entry point a user needs. `make help` lists them.
PYTHON   ?= python3
VENV     := .venv
BIN      := $(VENV)/bin
STAMP    := $(VENV)/.installed
NOTEBOOK_STAMP := $(VENV)/.notebook-installed
export DAGSTER_HOME ?= $(CURDIR)/dagster_home
# one "planned" event per asset for ranged runs, not one per day (see meteo_assets/definitions.py)
export DAGSTER_EMIT_PARTITION_SUBSET_IN_PLANNED_EVENTS ?= 1
# a ranged step's per-day events written in batches (the webserver and daemon plan runs too)
export DAGSTER_EVENT_BATCH_SIZE ?= 1000

# Debian packages the tests need, installed by `make test` when missing (scripts/ensure-system-packages)
SYSTEM_PACKAGES :=
# a PostgreSQL server for the deployment-profile test (meteo_assets_tests/test_postgres.py)
SYSTEM_PACKAGES += postgresql
# a headless browser for the dashboard's test (meteo_assets_tests/test_dashboard_browser.py)
SYSTEM_PACKAGES += chromium chromium-driver

START ?=
END   ?=
RANGE := $(if $(START),--start $(START)) $(if $(END),--end $(END))

.PHONY: help install run demo dev test lint clean-data dashboard notebook

help:  ## list the commands
	@grep -E '^[a-z-]+:.*##' $(MAKEFILE_LIST) | sed 's/:.*## /\t/' | expand -t 14

$(STAMP): setup.py constraints.txt
	@test -d $(VENV) || $(PYTHON) -m venv $(VENV)
	$(BIN)/pip install --quiet --upgrade pip
	$(BIN)/pip install --quiet -c constraints.txt -e '.[dev]'
	@touch $(STAMP)

install: $(STAMP)  ## create .venv and install the project (pinned set)

run: $(STAMP)  ## materialise the last 7 complete days (or START=YYYY-MM-DD END=YYYY-MM-DD) and print a summary
	$(BIN)/python -m meteo_assets.run $(RANGE)

demo: $(STAMP)  ## the same, offline: a local stand-in portal serving generated stations
	$(BIN)/python -m meteo_assets_tests.demo $(RANGE)

dev: $(STAMP)  ## open the Dagster UI (webserver + daemon) on http://127.0.0.1:3000
	$(BIN)/dagster dev -w workspace.yaml -h 127.0.0.1 -p 3000

dashboard: $(STAMP)  ## rebuild the dashboard from the tables (data/dashboard/index.html), print its path, open it
	$(BIN)/python -m meteo_assets.assets.dashboard

# JupyterLab is the `notebook` extra, installed on first use; the project's venv becomes the
# notebooks' `python3` kernel (a kernel spec inside .venv, found before any user-wide one)
$(NOTEBOOK_STAMP): $(STAMP)
	$(BIN)/pip install --quiet -c constraints.txt -e '.[notebook]'
	$(BIN)/python -m ipykernel install --sys-prefix --name python3 --display-name "Python 3 (meteo_assets)"
	@touch $(NOTEBOOK_STAMP)

# kernels start in notebooks/: the settings that are paths are made absolute from here
notebook: export METEO_DATA_DIR := $(abspath $(or $(METEO_DATA_DIR),data))
notebook: export METEO_DATASETS_FILE := $(abspath $(or $(METEO_DATASETS_FILE),datasets.toml))
notebook: $(NOTEBOOK_STAMP)  ## open JupyterLab on notebooks/ with the project's kernel and settings
	$(BIN)/jupyter lab notebooks $(if $(filter 0,$(shell id -u)),--allow-root)

lint: $(STAMP)  ## static checks: ruff (with flake8-bandit security rules), pinned dependencies (offline)
	$(BIN)/ruff check .
	$(BIN)/python scripts/check-pins

test: $(STAMP) lint  ## run the static checks, then the whole test suite
	@scripts/ensure-system-packages $(SYSTEM_PACKAGES)
	$(BIN)/pytest

clean-data:  ## delete the local data (raw files, DuckDB) and the run history
	rm -rf data
	find dagster_home -mindepth 1 ! -name dagster.yaml -exec rm -rf {} +
