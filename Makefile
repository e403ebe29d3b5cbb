# The two commands of the README:
#   make run    set everything up, start the local stack and import a sample job end to end
#   make test   set everything up and run the whole test suite
# `make setup` alone installs what both need; every step is skipped when already done.

PYTHON ?= python3.11
VENV := .venv
PY := $(VENV)/bin/python

.PHONY: setup system-packages lint test unit run stack clean-stack bench

setup: system-packages $(VENV)/.installed .cache/jars/kafka/.complete .cache/jars/spark/.complete \
       .cache/jars/spark-connect/.complete .cache/jars/iceberg/.complete .cache/kube/.complete

system-packages:
	@scripts/install-system-packages.sh

$(VENV)/.installed: pyproject.toml
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -e '.[dispatcher,runner,dev]'
	touch $@

.cache/jars/%/.complete: jvm/pom.xml | $(VENV)/.installed
	$(PY) -m stack.jars $*

# Delta's Connect server plug-in is compiled here from the sources in jvm/delta-connect.
.cache/jars/spark-connect/.complete: $(shell find jvm/delta-connect -path '*/target' -prune -o -type f -print)

# The tests' Kubernetes API server (etcd, kube-apiserver) built from source with Go; long
# the first time (see docs/deployment.md, "Kubernetes"), then skipped.
.cache/kube/.complete: scripts/build-kube.sh $(wildcard stack/go/go.* stack/go/*/*.go)
	scripts/build-kube.sh

# ruff (configured in pyproject.toml) over the whole tree, then mypy over the packages
# that ship; a few seconds, so `make test` runs them before the suite.
lint: $(VENV)/.installed
	$(PY) -m ruff check .
	$(PY) -m mypy

# The suite runs shuffled (pytest-random-order, in the dev extra): the modules in a random
# order, the tests of each module in a random order among themselves, so that module and
# session fixtures are still set up once. pytest's header prints the seed; PYTEST_ARGS,
# last on the command line, overrides: `make test PYTEST_ARGS=--random-order-seed=N` runs
# that order again, `PYTEST_ARGS=--random-order-bucket=none` runs in file order.
RANDOM_ORDER := -p random_order --random-order-bucket=module

test: setup lint
	$(PY) -m pytest $(RANDOM_ORDER) $(PYTEST_ARGS)

unit: $(VENV)/.installed
	$(PY) -m pytest tests/unit $(RANDOM_ORDER) $(PYTEST_ARGS)

run: setup
	$(PY) -m stack demo $(RUN_ARGS)

stack: setup
	$(PY) -m stack up --keep-running

# Each benchmark starts its own stack and prints its figures; none asserts a timing.
BENCHMARKS := runner_import intake import_latency throughput head_of_line dispatcher_memory

bench: setup
	for name in $(BENCHMARKS); do echo "== $$name"; uptime; $(PY) benchmarks/$$name.py || exit 1; done

clean-stack:
	rm -rf .stack
