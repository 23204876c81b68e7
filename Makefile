# cryptopred: `make up` runs the whole system, `make test` the fast tier of the suite, `make system` the slow one.
SHELL := /bin/bash
VENV := .venv
PY := $(VENV)/bin/python
# First interpreter >= 3.11 on PATH (override with `make PYTHON=...`).
PYTHON ?= $(shell for p in python3.13 python3.12 python3.11 python3; do \
	command -v $$p >/dev/null 2>&1 && $$p -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null && { echo $$p; break; }; done)

.PHONY: up test system chaos coverage demo docs install lint lock bench clean

install: $(VENV)/.installed

$(VENV)/.installed: requirements.lock pyproject.toml
	@if [ -z "$(PYTHON)" ]; then echo "cryptopred needs Python >= 3.11 on PATH (found none); install it or run make PYTHON=/path/to/python3.11" >&2; exit 1; fi
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements.lock
	@touch $@

# Local runs read the API without a token unless API_ANONYMOUS_READ says otherwise (the settings default is off).
up: install
	API_ANONYMOUS_READ=$${API_ANONYMOUS_READ:-true} $(PY) manage.py up

# Offline demo: embedded PostgreSQL + Redis under $CRYPTOPRED_DATA_DIR (default var/demo; never your
# DATABASE_URL/REDIS_URL), two real markets: Bitstamp BTC/USD trades and book (first 2 h to train on, last hour
# live) and Gemini ETH/USD trades (the first DEMO_HISTORY to train on), the live parts at DEMO_SPEED x real time.
demo: install
	DATABASE_URL= REDIS_URL= CRYPTOPRED_DATA_DIR=$${CRYPTOPRED_DATA_DIR:-var/demo} $(PY) manage.py demo --reset \
		--history $${DEMO_HISTORY:-6h} --speed $${DEMO_SPEED:-20}

# Fast tier: units and integration against the real PostgreSQL, Redis and Celery worker, in process.
test: install
	$(PY) -m ruff check .
	CRYPTOPRED_DATA_DIR=$${CRYPTOPRED_DATA_DIR:-var/test} $(PY) -m pytest -m 'not system'

# Slow tier: whole processes (manage.py up, the demo, uvicorn), the browser, fuzzing over HTTP and the faults.
system: install
	CRYPTOPRED_DATA_DIR=$${CRYPTOPRED_DATA_DIR:-var/test} $(PY) -m pytest -m system

# The faults alone (killed workers, outages): part of `make system`.
chaos: install
	CRYPTOPRED_DATA_DIR=$${CRYPTOPRED_DATA_DIR:-var/test} $(PY) -m pytest -m chaos

# Line coverage of both tiers, in every Python process the tests start; fails under 94 %.
coverage: install
	rm -rf var/coverage && mkdir -p var/coverage
	CRYPTOPRED_DATA_DIR=$${CRYPTOPRED_DATA_DIR:-var/test} $(PY) -m coverage run -m pytest -m 'system or not system'
	$(PY) -m coverage combine -q
	$(PY) -m coverage report --fail-under=94

# The documentation site (docs/, mkdocs.yml) into var/site; --strict: a broken link or anchor fails the build.
docs: install
	NO_MKDOCS_2_WARNING=1 $(PY) -m mkdocs build --strict --site-dir var/site

lint: install
	$(PY) -m ruff check .
	$(PY) -m ruff format --check .

# Re-pin requirements.lock from the ranges in pyproject.toml.
lock:
	rm -rf .lockvenv && $(PYTHON) -m venv .lockvenv
	.lockvenv/bin/pip install --quiet --upgrade pip
	.lockvenv/bin/python -c 'import tomllib; p = tomllib.load(open("pyproject.toml", "rb"))["project"]; \
		print("\n".join(p["dependencies"] + p["optional-dependencies"]["dev"]))' > .lockvenv/requirements.in
	.lockvenv/bin/pip install --quiet -r .lockvenv/requirements.in
	.lockvenv/bin/pip freeze > requirements.lock
	rm -rf .lockvenv

clean:
	rm -rf $(VENV) var
