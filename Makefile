# repmet-study: `make study` runs the default study, `make test` runs lint and the test suite.
PYTHON ?= python3
RESULTS ?= results
# Extra flags for study/run.py, e.g. STUDY_ARGS=--resume or STUDY_ARGS="--smoke --overwrite".
STUDY_ARGS ?=
VENV := .venv
PY := $(VENV)/bin/python
PIP := $(VENV)/bin/pip

.PHONY: study test lint report tensorboard bench install clean distclean

# The editable install is redone only when pyproject.toml changes; one stamp per extra.
$(PY):
	$(PYTHON) -m venv $(VENV)

$(VENV)/.installed-base: pyproject.toml | $(PY)
	$(PIP) install -e .
	touch $@

$(VENV)/.installed-dev: pyproject.toml | $(PY)
	$(PIP) install -e ".[dev]"
	touch $@ $(VENV)/.installed-base

install: $(VENV)/.installed-base

# The report of the default study re-trains each loss's best configuration with 3 new seeds, for
# the verdict's intervals (about a minute on 2 cores).
REPORT_ARGS ?= --repeats 3

study: $(VENV)/.installed-base
	$(PY) study/run.py --space repmet --storage $(RESULTS) $(STUDY_ARGS)
	$(PY) analysis/report.py --storage $(RESULTS) $(REPORT_ARGS)

report: $(VENV)/.installed-base
	$(PY) analysis/report.py --storage $(RESULTS)

tensorboard: $(VENV)/.installed-base
	$(VENV)/bin/tensorboard --logdir $(RESULTS)

lint: $(VENV)/.installed-dev
	$(VENV)/bin/ruff check .

test: lint
	$(VENV)/bin/pytest -q

bench: $(VENV)/.installed-base
	@set -e; for script in benchmarks/*.py; do \
		[ -e "$$script" ] || { echo "no scripts in benchmarks/"; exit 0; }; \
		echo "== $$script"; $(PY) "$$script"; \
	done

clean:
	rm -rf .pytest_cache .ruff_cache build dist *.egg-info $(VENV)/.installed-*
	find . -path ./$(VENV) -prune -o -name __pycache__ -type d -exec rm -rf {} +

# Keeps the virtual environment (a multi-GB install); remove .venv by hand to start afresh.
distclean: clean
	rm -rf $(RESULTS) benchmarks/out
