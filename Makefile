# Two commands do all the set-up on a fresh machine with Python 3.11: `make run`, `make test`.
PYTHON ?= $(shell command -v python3.11 || command -v python3)
VENV := .venv
PY := $(VENV)/bin/python
STAMP := $(VENV)/.installed

.PHONY: run demo postman postman-check test reliability lint bench-events bench-bundles bench-matching bench-import bench-geocoding bench-api token migrate clean

$(STAMP): requirements.txt requirements-dev.txt
	@command -v $(PYTHON) >/dev/null 2>&1 || { echo "need $(PYTHON) on PATH (or make PYTHON=python3)"; exit 1; }
	test -x $(PY) || $(PYTHON) -m venv $(VENV)
	$(PY) -m pip install --quiet --upgrade pip
	$(PY) -m pip install --quiet -r requirements-dev.txt
	touch $(STAMP)

## the whole platform on embedded PostgreSQL + Tansu broker + SMTP sink (Ctrl-C stops it)
run: $(STAMP)
	PYTHONPATH=. $(PY) -m shared.devstack

## a generated region (therapists, 200 patients, a past bundle run, answers) loaded into the
## running stack (make run in another terminal), then a guided tour of curl lines
demo: $(STAMP)
	PYTHONPATH=. $(PY) -m tools.demo $(DEMO_ARGS)

## the Postman collection and environment (postman/) from the five OpenAPI documents
postman: $(STAMP)
	PYTHONPATH=. $(PY) -m tools.postman

## fails when the committed collection is not what `make postman` writes
postman-check: $(STAMP)
	PYTHONPATH=. $(PY) -m tools.postman --check

## unit, integration and e2e tests (embedded servers unless TEST_DATABASE_URL / TEST_KAFKA_BOOTSTRAP_SERVERS)
test: $(STAMP)
	$(PY) -m pytest --ignore=tests/reliability

## faults, races, hostile input and access under real servers; prints the table (< 15 min)
reliability: $(STAMP)
	rm -f var/reliability.jsonl
	RELIABILITY_TALLY=var/reliability.jsonl $(PY) -m pytest tests/reliability; status=$$?; \
		PYTHONPATH=. $(PY) -m tools.reliability_report var/reliability.jsonl; \
		test $$status -eq 0

lint: $(STAMP)
	$(VENV)/bin/ruff check .
	$(VENV)/bin/ruff format --check .
	$(VENV)/bin/lint-imports
	$(VENV)/bin/mypy shared patient_service/rules.py therapist_service/rules.py geocoding_service/rules.py */service.py matching_service/service communication_service matching_service/placement matching_service/bundling \
		matching_service/simulation therapist_service/directory benchmarks tools

## outbox -> Kafka -> consumer throughput, order check, latency, a consumer joining
## (6 partitions, 1 relay, 2 consumers; other set-ups: make bench-events EVENTS_ARGS="--consumers 1")
bench-events: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/events.py $(EVENTS_ARGS)

## bundle algorithm at three market sizes
bench-bundles: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_bundles.py

## one real bundle run end to end (10,000 searches, 2,000 therapists; embedded PostgreSQL unless BENCH_DATABASE_URL or TEST_DATABASE_URL)
bench-matching: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_matching.py

## directory import: 40,000 therapists generated, imported, imported again (PLZ_DATA or ../shared/data)
bench-import: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_import.py

## PLZ import of the GeoNames CSV and 10,000 distances in one request
bench-geocoding: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_geocoding.py

## outbox retention: prune of 200,000 rows while writes go on, replay of 20,000 rows
.PHONY: bench-retention
bench-retention: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_retention.py

## the API under load: 100,000 patients, 40,000 therapists loaded with COPY, the services under
## gunicorn as in make run, mixed staff traffic at 50, 200, 500 requests/s (BENCH_API_ARGS)
bench-api: $(STAMP)
	PYTHONPATH=. $(PY) benchmarks/bench_api.py $(BENCH_API_ARGS)

## a new API token for the running dev stack: make token NAME=alice [ROLE=staff|admin]
ROLE ?= staff
token: $(STAMP)
	@test -n "$(NAME)" || { echo "usage: make token NAME=you [ROLE=staff|admin]"; exit 2; }
	@test -f var/dev.env || { echo "start the stack first (make run), or use: python -m shared.cli tokens create"; exit 2; }
	@set -a; . var/dev.env; set +a; PYTHONPATH=. $(PY) -m shared.cli tokens create --name "$(NAME)" --role "$(ROLE)"

migrate: $(STAMP)
	PYTHONPATH=. $(PY) -m shared.cli migrate

clean:
	rm -rf $(VENV) .pytest_cache .ruff_cache .hypothesis
