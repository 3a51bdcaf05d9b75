# The two commands: `make demo` and `make test`. Each creates .venv and installs what it needs.
PYTHON ?= python3
VENV   := .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: demo test install up bench bench-quick bench-kafka bench-scale bench-handlers schemas clean

$(STAMP): pyproject.toml
	test -x $(BIN)/python || $(PYTHON) -m venv $(VENV)
	$(BIN)/python -m pip install --quiet --upgrade pip
	$(BIN)/python -m pip install --quiet -e '.[test]'
	$(BIN)/python -m runtime.durable  # the local S3 server behind `salesbus up`'s durable topics
	touch $(STAMP)

install: $(STAMP)

demo: $(STAMP)
	$(BIN)/salesbus demo

# Short versions of the fuzzers here (make test-slow and make fuzz run the long ones): 8 valid and
# 4 invalid schemathesis cases per operation and role instead of 30 and 15; 300 bad records.
SHORT_FUZZ := SALESBUS_FUZZ_POSITIVE=8 SALESBUS_FUZZ_NEGATIVE=4 SALESBUS_FUZZ_BAD_RECORDS=300

# Two pytest-xdist workers: the integration tier on one, every other tier (browser, e2e, handlers,
# unit) on the other, each in collection order with a stack of its own (tests/conftest.py
# INTEGRATION_TIERS and its scheduler for --dist loadscope).
test: $(STAMP) ops-tools browser-deps
	$(SHORT_FUZZ) $(BIN)/python -m pytest -q -rs -n 2 --dist loadscope --durations=25 -m "not slow" tests

# The slower tier: kill -9 of the supervisor and of the whole durable stack mid-flow, payments
# scaled 1 -> 3 -> 1 under load, the thorough money tests, every dashboard query on a real
# Prometheus, and the OpenAPI fuzzing at full size. make test keeps a short version of each (up,
# status and SIGTERM; the e2e money flows; promtool checks; fewer fuzz cases). The Stripe adapter
# against stripe-mock (built with go, when go is here) runs only here.
.PHONY: test-slow
test-slow: $(STAMP) ops-tools
	$(BIN)/python -m pytest -q -m slow tests
	$(BIN)/python -m pytest -q tests/integration/test_openapi_fuzz.py

# The handler tier alone (a private database per test, no broker): seconds, for quick feedback.
.PHONY: test-handlers
test-handlers: $(STAMP)
	$(BIN)/python -m pytest -q tests/handlers

up: $(STAMP)
	$(BIN)/salesbus up

# Issue 11's benchmark (not a test): one embedded stack, upstream and HTTP paths, latency at half
# load, CPU per order per process, idle CPU, the raw bus in the same run; writes .salesbus/bench.json.
bench: $(STAMP)
	$(BIN)/python bench/checkout_bench.py

# The same in under two minutes (smaller bursts and phases).
bench-quick: $(STAMP)
	$(BIN)/python bench/checkout_bench.py --quick

# The same benchmark on Apache Kafka (needs java and mvn; jars from Maven Central on first use):
# .salesbus/bench-kafka.json. BENCH_ARGS=--quick for the short version.
bench-kafka: $(STAMP)
	$(BIN)/python -m tests.kafka_cluster
	$(BIN)/python bench/checkout_bench.py --broker kafka $(BENCH_ARGS)

# Issue 11's scale figures (not a test): standing orders all due at once, the consumer with a full
# inbox, CRM queries on a large contact log; writes .salesbus/scale.json (--quick: a tenth of the sizes).
bench-scale: $(STAMP)
	$(BIN)/python bench/scale.py

# CPU and statements per order of our consumers' handlers alone (payments, orders, notifications on
# an embedded PostgreSQL, no broker): steadier than the stack's figure on a shared VM, for A/B of
# handler and SQL changes; writes .salesbus/handler-bench.json.
bench-handlers: $(STAMP)
	$(BIN)/python bench/handler_bench.py

schemas: $(STAMP)
	$(BIN)/python -m schemas.generate

clean:
	rm -rf .salesbus

# The Kafka tiers: the same integration and end-to-end tests on Apache Kafka (KRaft), fetched once
# with Maven into build/kafka (tests/kafka_cluster.py); needs java and mvn.
.PHONY: test-kafka test-kafka-faults

test-kafka: $(STAMP)
	$(BIN)/python -m tests.kafka_cluster
	SALESBUS_TEST_BROKER=kafka $(BIN)/python -m pytest -q -m "not slow" tests/integration tests/e2e tests/kafka

test-kafka-faults: $(STAMP)
	$(BIN)/python -m tests.kafka_cluster
	SALESBUS_TEST_BROKER=kafka SALESBUS_TEST_KAFKA_BROKERS=3 $(BIN)/python -m pytest -q tests/kafka_faults

.PHONY: fuzz
# 10 000 generated bad records on every consumed topic, mixed with good orders, into the running
# services (tests/e2e/test_fuzz_flow.py); `make test` runs it with 300.
fuzz: $(STAMP)
	SALESBUS_FUZZ_BAD_RECORDS=10000 SALESBUS_FUZZ_GOOD_ORDERS=300 $(BIN)/python -m pytest -q -s tests/e2e/test_fuzz_flow.py

.PHONY: ops-tools
# promtool (Debian's `prometheus`) and docker-compose check deploy/ (tests/unit/test_ops_as_code.py,
# test_deploy_manifests.py). Installed with apt when missing and running as root; otherwise those
# checks skip and say why.
ops-tools:
	@if ! command -v promtool >/dev/null || ! command -v docker-compose >/dev/null; then \
	  if [ "$$(id -u)" = 0 ] && command -v apt-get >/dev/null; then \
	    echo "installing promtool and docker-compose (Debian packages prometheus, docker-compose)"; \
	    (apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends \
	      prometheus docker-compose >/dev/null) || echo "could not install them: the deploy/ checks will skip"; \
	  else echo "promtool or docker-compose missing (not root or no apt): the deploy/ checks will skip"; fi; \
	fi

.PHONY: browser-deps
# The browser tier (tests/browser) drives Debian's Chromium with axe-core from npm. As root (CI) a
# missing Chromium is installed with apt-get; otherwise the tier is skipped and pytest says why.
browser-deps:
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" = 0 ]; then \
		apt-get install -y chromium || (apt-get update && apt-get install -y chromium) || \
		echo "could not install chromium: the browser tier will be skipped"; fi
	@if [ ! -x /usr/bin/chromium ] && [ "$$(id -u)" != 0 ]; then \
		echo "chromium is not installed and make is not root: the browser tier (tests/browser) will be skipped"; fi
	@if [ ! -f tests/browser/node_modules/axe-core/axe.min.js ] && command -v npm >/dev/null; then \
		npm install --no-audit --no-fund --prefix tests/browser; fi
