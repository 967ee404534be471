# rehydrate — developer entry points. `make help` lists them.
#
# Kafka: `kafka-up` uses docker/docker-compose.yml when a Docker engine
# answers (`docker info`), else docker/kafka-local (a real Kafka run with
# java -cp, jars from Maven Central). Force one with KAFKA_MODE=docker|local.

SHELL := bash
.SHELLFLAGS := -eu -o pipefail -c
.DEFAULT_GOAL := help

GO                  ?= go
KAFKA_MODE          ?= auto
COMPOSE_FILE        := docker/docker-compose.yml
KAFKA_LOCAL         := bash docker/kafka-local
STATICCHECK_VERSION := v0.8.2
FUZZTIME            ?= 30s
KAFKA_PORT          ?= 9092
KAFKA_ADDR          := 127.0.0.1:$(KAFKA_PORT)
export KAFKA_PORT

# Evaluated only when used: "docker" when a Docker engine answers.
KAFKA_BACKEND = $(shell \
	if [ "$(KAFKA_MODE)" = docker ] || [ "$(KAFKA_MODE)" = local ]; then echo "$(KAFKA_MODE)"; \
	elif command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then echo docker; \
	else echo local; fi)
COMPOSE = docker compose -f $(COMPOSE_FILE)

.PHONY: help test test-e2e test-kfake test-db test-faults test-security fuzz vet lint run run-reader bench kafka-up kafka-down kafka-status kafka-logs kafka-clean

help: ## list the targets
	@awk 'BEGIN {FS = ":.*## "} /^[a-zA-Z0-9_-]+:.*## / {printf "  %-13s %s\n", $$1, $$2}' $(MAKEFILE_LIST)

test: ## go vet + go test -race against a real Kafka (starts/stops one when KAFKA_BROKERS is unset)
	@bash scripts/test.sh

test-e2e: ## the end-to-end tests (examples/e2e) once per client of KAFKA_CLIENTS (default "confluent franz"), on the Kafka make test uses
	@bash scripts/test.sh e2e

test-kfake: ## go test -race as without a broker (KAFKA_BROKERS and CI unset): the suites run on kfake; not internal/faults, internal/security
	@bash scripts/test-kfake.sh

test-db: ## the long projection tests (internal/projections) on a real PostgreSQL (docker/postgres-local when DATABASE_URL is unset) and Kafka
	@bash scripts/test-db.sh

test-faults: ## the fault tests (internal/faults) on a three-broker Kafka they may crash (docker/kafka-local --brokers 3)
	@bash scripts/test-faults.sh

test-security: ## TLS, SASL/SCRAM and ACL tests of both Kafka providers (internal/security) on a secured node (docker/kafka-local start --secure, ports 9592-9594)
	@bash scripts/test-security.sh

fuzz: ## every fuzz target (func FuzzX in a _test.go), one after the other, for FUZZTIME each (default 30s)
	@grep -rl --include='*_test.go' --exclude-dir=.git --exclude-dir=tmp --exclude-dir=testdata '^func Fuzz' . | sort | \
	while read -r file; do \
		for name in $$(sed -n 's/^func \(Fuzz[A-Za-z0-9_]*\)(.*/\1/p' "$$file"); do \
			echo "== $$name ($$(dirname "$$file"), $(FUZZTIME))"; \
			$(GO) test -run '^$$' -fuzz "^$$name\$$" -fuzztime $(FUZZTIME) "./$$(dirname "$${file#./}")" </dev/null; \
		done; \
	done

vet: ## go vet, every module of the workspace (scripts/modules.sh)
	$(GO) vet $$(scripts/modules.sh patterns)

lint: vet ## go vet + staticcheck
	$(GO) run honnef.co/go/tools/cmd/staticcheck@$(STATICCHECK_VERSION) $$(scripts/modules.sh patterns)

run: ## start Kafka if none answers (Docker, else docker/kafka-local, else in-memory devkafka), then the example writer on :4000 (KAFKA_CLIENT=confluent|franz picks the client)
	@KAFKA_MODE=$(KAFKA_MODE) GO=$(GO) bash examples/run.sh writer

run-reader: ## the example reader (projection) on :4001, on the same Kafka as make run
	@KAFKA_MODE=$(KAFKA_MODE) GO=$(GO) bash examples/run.sh reader

bench: ## the benchmark harness: seeds its own topics, prints the tables, writes bench/results/ (starts Kafka if none answers; a PostgreSQL for the projection section when DATABASE_URL is unset, stopped afterwards)
	@if [ -z "$${KAFKA_BROKERS:-}" ] && ! (exec 3<>"/dev/tcp/127.0.0.1/$(KAFKA_PORT)") 2>/dev/null; then $(MAKE) --no-print-directory kafka-up; fi
	@pg=0; url="$${DATABASE_URL:-}"; \
	if [ -z "$$url" ]; then docker/postgres-local status || pg=1; url=$$(docker/postgres-local start | tail -n 1); fi; \
	rc=0; KAFKA_BROKERS="$${KAFKA_BROKERS:-$(KAFKA_ADDR)}" DATABASE_URL="$$url" $(GO) run ./bench $(BENCH_FLAGS) || rc=$$?; \
	if [ $$pg = 1 ]; then docker/postgres-local stop; fi; exit $$rc

kafka-up: ## start a single-node Kafka on 127.0.0.1:$KAFKA_PORT, default 9092 (Docker if it answers, else docker/kafka-local)
	@if [ "$(KAFKA_BACKEND)" = docker ]; then \
		$(COMPOSE) up -d --wait; \
	else \
		$(KAFKA_LOCAL) start; \
	fi

kafka-down: ## stop that Kafka and drop its data
	@if [ "$(KAFKA_BACKEND)" = docker ]; then \
		$(COMPOSE) down --volumes; \
	else \
		$(KAFKA_LOCAL) stop; \
	fi

kafka-status: ## is Kafka running? (exit 0 when it is)
	@if [ "$(KAFKA_BACKEND)" = docker ]; then \
		$(COMPOSE) ps; \
		test -n "$$($(COMPOSE) ps --status running -q)"; \
	else \
		$(KAFKA_LOCAL) status; \
	fi

kafka-logs: ## last 200 lines of the broker log
	@if [ "$(KAFKA_BACKEND)" = docker ]; then \
		$(COMPOSE) logs --tail 200 kafka; \
	else \
		$(KAFKA_LOCAL) logs; \
	fi

kafka-clean: ## stop docker/kafka-local and delete its jar cache (docker/.cache)
	$(KAFKA_LOCAL) stop
	rm -rf docker/.cache
