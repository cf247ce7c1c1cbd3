# The two commands of the README. Both install what they need by themselves.
#   make run   - local Apache Kafka (KRaft) + a segstream worker
#   make test  - the whole test suite (real broker included)
#   make reliability - the long reliability runs: crash test (10 SIGKILLs, a broker restart) and a
#                      30-minute soak with a 10x burst (about 40 minutes)
VENV   ?= .venv
PYTHON ?= python3
PY     := $(VENV)/bin/python
STAMP  := $(VENV)/.installed-$(shell cat pyproject.toml | sha1sum | cut -c1-12)

.PHONY: run test lint setup system-deps kafka-jars bench reliability

setup: $(STAMP)

$(STAMP): pyproject.toml
	@scripts/install-system-deps.sh
	@test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[test]'
	@rm -f $(VENV)/.installed-* && touch $@

system-deps:
	@scripts/install-system-deps.sh

kafka-jars: setup
	$(PY) -m streams.cli kafka-jars

run: setup kafka-jars
	$(VENV)/bin/segstream run

test: setup kafka-jars lint
	$(PY) -m pytest -q -p no:cacheprovider $(PYTEST_ARGS)

lint: setup
	$(PY) -m ruff check --no-cache .
	$(PY) -m mypy

reliability: setup kafka-jars
	$(VENV)/bin/segstream crash-test --kills 10 --broker-restarts 1
	$(VENV)/bin/segstream soak --minutes 30
