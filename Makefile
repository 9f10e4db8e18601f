# ktl: `make run` sets everything up, trains the demo model and serves it;
# `make test` runs the whole suite. Both work on a fresh machine with Python 3.11.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# tensorflow-cpu is the smaller wheel; GPU machines: make install EXTRAS=gpu,dev
EXTRAS ?= cpu,dev
# Every install (this Makefile, CI, the Dockerfile) takes the versions pinned here.
CONSTRAINTS := constraints.txt
# make run's port: PORT=8731, else $KTL_PORT (as for ktl serve), else 8000. RETRAIN=1
# trains a new demo version even when the store already holds one.
PORT ?= $(or $(KTL_PORT),8000)
RETRAIN ?=

.PHONY: install test test-fast lint format run clean system-tools lock container-check

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml $(CONSTRAINTS)
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -c $(CONSTRAINTS) -e '.[$(EXTRAS)]'
	touch $@

# pytest's exit status reaches make as is: a failure, and exit 5 (no tests ran), fail it.
test: install system-tools
	$(PY) -m pytest --durations=25

# The suite without the tests marked slow (trained models, live servers): minutes, not a quarter hour.
# It prints its 15 slowest tests, as make test does its 25: where the time goes.
test-fast: install
	$(PY) -m pytest -m "not slow" --durations=15

# Debian packages some tests drive: chromium (the browser tests), nginx (the
# buffering proxy in front of the service) and wrk (load during a bucket's label
# moves; a Python thread stands in without it); installed where this machine can.
SYSTEM_TOOLS := chromium nginx wrk
system-tools:
	@missing=""; for tool in $(SYSTEM_TOOLS); do \
	  command -v $$tool >/dev/null 2>&1 || [ -x /usr/sbin/$$tool ] || missing="$$missing $$tool"; done; \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null) \
	      || echo "could not install$$missing: the tests that need them will skip"; \
	  else echo "not installed:$$missing (apt-get install$$missing): the tests that need them will skip"; fi; fi

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports --no-logo
	$(VENV)/bin/hadolint --failure-threshold warning Dockerfile

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

# Refresh constraints.txt: the newest versions pyproject.toml allows, resolved in a
# fresh virtual environment with every extra a CPU machine installs.
lock:
	rm -rf .lock-venv
	$(PYTHON) -m venv .lock-venv
	.lock-venv/bin/pip install --quiet --upgrade pip
	.lock-venv/bin/pip install --quiet '.[cpu,serve,train,export,dev]'
	{ echo "# Pinned versions for every install (make install, CI, the Dockerfile)."; \
	  echo "# Refreshed by \`make lock\` ($$(date -u +%Y-%m-%d), $$(.lock-venv/bin/python --version))."; \
	  .lock-venv/bin/pip freeze --exclude-editable | grep -v '^ktl[ =@]'; } > $(CONSTRAINTS)
	rm -rf .lock-venv build

run: install
	$(VENV)/bin/ktl demo --port $(PORT)$(if $(filter 1 yes true,$(RETRAIN)), --retrain)
	@echo
	@echo "Serving on http://127.0.0.1:$(PORT) (Ctrl-C stops): open it in a browser; train more at /train. Or:"
	@echo "  curl -F image=@demo_data/circle/circle_0000.png http://127.0.0.1:$(PORT)/v1/models/demo/predict"
	@echo
	KTL_TRAINING=open $(VENV)/bin/ktl serve --host 127.0.0.1 --port $(PORT)

clean:
	rm -rf $(VENV) model_store demo_data demo_multilabel .pytest_cache .ruff_cache .mypy_cache .import_linter_cache

# Builds the Dockerfile for real with podman (no Docker engine needed) and checks
# the images: service, health check, a prediction, `ktl train` inside the container.
container-check: install
	bash scripts/container-check.sh
