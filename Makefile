# The two set-up commands of the README:
#   make quickstart   creates .venv, builds the Rust core, runs the quickstart pipeline end to end
#   make test         the same environment, then the whole test suite (what CI runs)
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.curate-installed
CORE    = $(VENV)/.curate-core

TYPECHECK = build/typecheck

.PHONY: env quickstart test typecheck test-python test-fast test-ray test-e2e test-system test-native lint lint-native stubcheck wheel-check dist clean

# The core alone (what the quickstart needs: no model, no web app, no test tools): a first
# result in a few minutes on a fresh machine.
$(CORE): pyproject.toml native/Cargo.toml native/Cargo.lock $(wildcard native/src/*.rs)
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	PYTHONWARNINGS="ignore:Editable installation:UserWarning" $(PY) -m pip install --quiet -e .
	touch $(CORE)

$(STAMP): $(CORE)
	@# llama-cpp-python (the synth extra) is built from source: without GGML_NATIVE=OFF the build
	@# targets the build machine's CPU features and crashed on the project's VMs
	@# setuptools warns on every editable install that folders named like the package may shadow it
	@# (curate/ is the package root here, by design): filtered by its message, nothing else hidden
	CMAKE_ARGS="$${CMAKE_ARGS:--DGGML_NATIVE=OFF}" PYTHONWARNINGS="ignore:Editable installation:UserWarning" \
		$(PY) -m pip install --quiet -e ".[dev]"
	touch $(STAMP)

env: $(STAMP)

quickstart: $(CORE)
	$(VENV)/bin/curate run pipelines/examples/quickstart.yaml
	$(VENV)/bin/curate versions out/quickstart
	$(VENV)/bin/curate show out/quickstart

test-native:
	cd native && cargo test --quiet
	cd native && cargo clippy --quiet --all-targets -- -D warnings

# pyflakes' checks (unused and undefined names and imports) on every Python file ([tool.ruff])
lint: env
	$(PY) -m ruff check .

# mypy on the package: the folders the package is built from, linked under the names they are
# imported by (curate/pipelines -> pipelines/, ...), since mypy cannot see setuptools' mapping
typecheck: env
	rm -rf $(TYPECHECK)/curate && mkdir -p $(TYPECHECK)/curate
	for f in curate/*.py curate/*.pyi curate/py.typed; do ln -s "$(CURDIR)/$$f" $(TYPECHECK)/curate/; done
	for d in pipelines filters synth annotation; do ln -s "$(CURDIR)/$$d" $(TYPECHECK)/curate/$$d; done
	cd $(TYPECHECK) && "$(CURDIR)/$(PY)" -m mypy --config-file "$(CURDIR)/pyproject.toml" -p curate

stubcheck: env
	$(PY) -m mypy.stubtest --mypy-config-file pyproject.toml curate._native

test-python: env
	$(PY) -m pytest -q

# One tier of the tests (tests/conftest.py gives each test its tier): for the edit loop.
# unit: no Ray, no subprocess (about a minute and a half here); ray: Ray in the test's process;
# e2e: the curate command; system: a browser, Postgres, Airflow, a wheel build, real models.
test-fast: env
	$(PY) -m pytest -q -m unit

test-ray: env
	$(PY) -m pytest -q -m ray

test-e2e: env
	$(PY) -m pytest -q -m e2e

test-system: env
	$(PY) -m pytest -q -m system

# What a user gets: build the sdist from this tree, a wheel from the sdist (not from the checkout),
# check both (the Rust crate in the sdist, the abi3 tag, every package and data file in the
# wheel), install the wheel into a fresh venv, import every module and run the quickstart from a
# temporary folder. Part of test-python too. Dependencies come from build/wheelhouse (filled from
# PyPI on first use; delete it to refresh).
wheel-check: env
	$(PY) -m pytest -q tests/test_packaging.py

# The sdist and a wheel built from it, in dist/.
dist: env
	$(PY) -m build --outdir dist .

test: env lint typecheck test-native stubcheck test-python

clean:
	rm -rf $(VENV) native/target build dist *.egg-info curate/_native*.so
