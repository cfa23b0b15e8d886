# FieldLoop: the two commands are `make demo` and `make test`; everything else is a helper.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test bench lint format services venv clean

venv: $(STAMP)

# One virtualenv, installed from the pinned lock; the project itself is installed editable so
# rules/ and device_profiles/ are read from this checkout.
$(STAMP): requirements.lock pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --disable-pip-version-check -r requirements.lock
	$(BIN)/python -m pip install --quiet --disable-pip-version-check --no-deps --no-build-isolation -e .
	touch $(STAMP)

demo: $(STAMP)
	$(BIN)/fieldloop demo

# The suite talks to the real Mosquitto and PostgreSQL: make sure both are installed and up.
services:
	bash scripts/ensure-services.sh

# Parallel workers (pytest-xdist): more than the cores, since many integration tests wait on a
# real broker, database or device rather than compute. Each worker has its own databases, topic
# roots and ports (tests/conftest.py).
TEST_JOBS ?= 3

test: $(STAMP) services
	$(BIN)/ruff check .
	$(BIN)/python -m pytest -n $(TEST_JOBS) --dist worksteal

bench: $(STAMP) services
	$(BIN)/python bench/ticket_latency.py
	$(BIN)/python bench/edge_throughput.py
	$(BIN)/python bench/central_ingest.py
	$(BIN)/python bench/telemetry_store.py
	$(BIN)/python bench/central_scaling.py
	$(BIN)/python bench/simulator_throughput.py
	$(BIN)/python bench/ticket_transitions.py
	$(BIN)/python bench/rules_engine.py
	$(BIN)/python bench/rules_check.py
	$(BIN)/python bench/dispatch_decision.py
	$(BIN)/python bench/sla_clock.py

lint: $(STAMP)
	$(BIN)/ruff check .
	$(BIN)/ruff format --check .

format: $(STAMP)
	$(BIN)/ruff format .
	$(BIN)/ruff check --fix .

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache data
