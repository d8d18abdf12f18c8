# One place that knows how to install lavis-sevila on a fresh machine.
# `make demo` : install into .venv and run the embedded default main job (CPU, minutes).
# `make test` : install into .venv and run the test suite (what .ci/run calls).
PYTHON ?= python3
VENV   := .venv
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed
# the exact set the tests and the demo ran with
PIN    := -c .ci/constraints.txt

.PHONY: install demo test
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

test: install
	$(PY) -m pytest -q
