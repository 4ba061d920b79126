# Every target builds .venv from the pinned requirements when it is missing or stale.
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed
SYSTEM_STAMP := $(VENV)/.system-packages
export PATH := $(abspath $(VENV))/bin:$(PATH)
export OMP_NUM_THREADS := 1
export PYTHONDONTWRITEBYTECODE := 1

.PHONY: setup demo test test-fast release lectures lab hub bench bench-cluster bundle calibrate solutions clean

setup: $(STAMP) $(SYSTEM_STAMP)

$(STAMP): requirements.txt pyproject.toml
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --disable-pip-version-check -r requirements.txt
	$(PY) -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation \
		--config-settings editable_mode=compat -e .
	@touch $@

$(SYSTEM_STAMP): scripts/install-system-packages | $(STAMP)
	scripts/install-system-packages
	@touch $@

## The main job: build the release and grade the sample class in demo/.
demo: setup
	$(PY) -m grading demo

## All tests (unit, lint, notebooks, release, grading, sandbox, hostile, cheating, browser).
test: setup
	$(PY) -m pytest -q

## The quick loop: unit, registry, catalogue, settings, report and lint tests (no kernels, no browser).
test-fast: setup
	$(PY) -m pytest -q -m "not slow and not browser"

## Regenerate release/ from source/.
release: setup
	$(PY) -m grading release

## Re-execute the lecture notebooks in place (commit them with their outputs; strict nbval checks them).
lectures: setup
	$(PY) -m grading lectures

## JupyterLab for students, on 127.0.0.1, in workspace/ (a copy of the student bundle).
lab: setup
	$(PY) -m grading lab

## JupyterHub for a class (as root): students' environment, exchange, PAM logins (see README, "Teach a class").
hub: setup
	$(PY) -m grading hub

## Plain nbgrader vs the course's grader on the same class.
bench: setup
	$(PY) -m grading bench

## The local pool vs a 2-worker Dask cluster (real scheduler and worker processes) on this machine.
bench-cluster: setup
	$(PY) -m grading bench-cluster

## What students get: bundle/ (release, lectures, student checks, setup notes).
bundle: setup
	$(PY) -m grading bundle

## Retrain the references and the known-bad variants on many seeds; print pass rates.
calibrate: setup
	$(PY) -m grading calibrate

## Remove what commands regenerate (demo, bundles, reports, autograded notebooks, feedback); the class's
## gradebook.db (grades and their audit trail) and submitted/ stay.
clean:
	rm -rf demo workspace bundle build reports autograded feedback
