# imageserver — the two commands of the quick start are `make demo` and `make test` (as root, Debian 12).
PYTHON ?= python3
VENV   ?= .venv
PY      = $(VENV)/bin/python
STAMP   = $(VENV)/.installed
# Test files run on this many pytest-xdist workers (one file per worker at a time: a file's module-scoped
# lab stays in one process). Two keeps a 2-core box busy: the e2e VMs are single-threaded TCG.
TEST_WORKERS ?= 2
PYTEST  = $(PY) -m pytest -q -n $(TEST_WORKERS) --dist loadfile

.PHONY: help deps venv test test-unit test-system test-e2e lint demo bench fuzz deb clean

help:
	@echo "make demo    set up a lab network and PXE-install a VM from the imageserver"
	@echo "make test    install what the tests need and run the whole suite (TEST_WORKERS=2 xdist workers)"
	@echo "make lint    ruff, mypy (strict) on protocols/, state/ and domain/, lint-imports (the layers), shellcheck + dash -n"
	@echo "make bench   side-by-side benchmarks against real peers (make test runs each once: BENCH_ARGS=--smoke)"
	@echo "make fuzz    long mutation-fuzzing campaigns: 1,000,000 inputs per protocol (FUZZ_INPUTS=N)"
	@echo "make deb     build dist/imageserver_<version>_amd64.deb (private venv in /usr/lib/imageserver)"

# System packages: the list lives in deps/apt-packages.txt so nothing is installed by hand.
deps:
	@sh deps/install.sh

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	touch $(STAMP)

venv: $(STAMP)

# The shell that runs on other machines: the installer's /init and runtime, prepareclient, updateclient.
SH_FILES = $(wildcard appliance/boot/installer/*.sh appliance/boot/installer/lib/*.sh appliance/boot/installer/transports/*.sh) \
           appliance/data/prepareclient appliance/data/updateclient

lint: venv
	$(VENV)/bin/ruff check .
	$(VENV)/bin/mypy
	$(VENV)/bin/lint-imports
	shellcheck -s sh -x $(SH_FILES)
	@for f in $(SH_FILES); do dash -n "$$f" || exit 1; done

# The slowest 15 tests and the e2e [timing] lines close the run's summary, so the suite's time can be
# watched from one CI log to the next.
test: deps venv lint
	$(PYTEST) --durations=15 $(PYTEST_ARGS)

test-unit: venv
	$(PY) -m pytest -q tests/unit $(PYTEST_ARGS)

test-system: deps venv
	$(PYTEST) -m system $(PYTEST_ARGS)

test-e2e: deps venv
	$(PYTEST) -m e2e $(PYTEST_ARGS)

demo: deps venv
	$(PY) -m lab.demo

fuzz: venv
	$(PY) -m tests.fuzz.campaign --inputs $${FUZZ_INPUTS:-1000000}

# BENCH_ARGS=--smoke: each bench once with tiny sizes (what tests/system/test_bench_smoke.py runs).
bench: deps venv
	@for b in bench/[!_]*.py; do echo "== $$b"; $(PY) $$b $(BENCH_ARGS) || exit 1; done

clean:
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .ruff_cache .import_linter_cache

# The Debian package (packaging/build_deb.py): the app and its Python dependencies in a private venv under
# /usr/lib/imageserver, the unit, docs, man page and bash completion. DEB_ARGS=--version X overrides the version.
deb: venv
	$(PY) packaging/build_deb.py --out dist $(DEB_ARGS)
