# One place that knows how to install lavis-sevila on a fresh machine.
# `make demo` : install into .venv and run the embedded default main job (CPU, minutes).
# `make test` : install into .venv and run the test suite (what .ci/run calls).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the exact set the tests and the demo ran with
PIN    := -c .ci/constraints.txt

.PHONY: install demo test browser
install: $(STAMP)

$(STAMP): setup.cfg pyproject.toml .ci/constraints.txt
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	# torch first, pinned to the builds this project is tested with
	$(PY) -m pip install --quiet $(PIN) torch==2.14.1 torchvision==0.29.1
	# LAVIS without its stale dependency pins (transformers<4.27); see README "Why --no-deps"
	$(PY) -m pip install --quiet --no-deps salesforce-lavis==1.0.2
	$(PY) -m pip install --quiet $(PIN) -e ".[dev]"
	$(PY) -c "import lavis_sevila; lavis_sevila.check_environment(strict=True)"
	touch $(STAMP)

demo: install
	$(PY) -m lavis_sevila.demo

# Debian's Chromium for tests/test_webdemo_browser.py (Playwright, from the dev extras, drives
# it and never downloads a browser of its own). Installed only when missing, as root with apt-get;
# anywhere else that test skips and says why.
browser:
	@if ! command -v chromium >/dev/null 2>&1; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null 2>&1; then \
	    echo "installing Debian's chromium for the browser test"; \
	    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends chromium; } >/dev/null \
	      || echo "warning: could not install chromium: tests/test_webdemo_browser.py will skip"; \
	  else \
	    echo "chromium not found and not root with apt-get: tests/test_webdemo_browser.py will skip"; \
	  fi; \
	fi

test: install browser
	$(PY) -m pytest -q -rs
