# ktl: `make run` sets everything up, trains the demo model and serves it;
# `make test` runs the whole suite. Both work on a fresh machine with Python 3.11.
VENV ?= .venv
PYTHON ?= python3
PY := $(VENV)/bin/python
# tensorflow-cpu is the smaller wheel; GPU machines: make install EXTRAS=gpu,dev
EXTRAS ?= cpu,dev
PORT ?= 8000

.PHONY: install test lint format run clean browser

install: $(VENV)/.installed

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[$(EXTRAS)]'
	touch $@

test: install browser
	$(PY) -m pytest

# The browser tests drive Debian's chromium; install it where this machine can.
browser:
	@command -v chromium >/dev/null 2>&1 || { \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null) \
	      || echo "could not install chromium: the browser tests will skip"; \
	  else echo "chromium is not installed (apt-get install chromium): the browser tests will skip"; fi; }

lint: install
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/hadolint --failure-threshold warning Dockerfile

format: install
	$(VENV)/bin/ruff format .
	$(VENV)/bin/ruff check --fix .

run: install
	$(VENV)/bin/ktl demo
	@echo
	@echo "Serving on http://127.0.0.1:$(PORT) (Ctrl-C stops). In another terminal:"
	@echo "  curl -F image=@demo_data/circle/circle_0000.png http://127.0.0.1:$(PORT)/v1/models/demo/predict"
	@echo
	$(VENV)/bin/ktl serve --port $(PORT)

clean:
	rm -rf $(VENV) model_store demo_data .pytest_cache .ruff_cache

# Builds the Dockerfile for real with podman (no Docker engine needed) and checks
# the image: service, health check, a prediction, `ktl train` inside the container.
.PHONY: container-check
container-check: install
	bash scripts/container-check.sh
