#!/usr/bin/env bash
# scripts/test.sh — `make test`: go vet, then go test -race against a real
# Kafka. With KAFKA_BROKERS set, that cluster is used as it is. Without it:
# when something already listens on 127.0.0.1:$KAFKA_PORT (default 9092) it
# is used and left running; otherwise `make kafka-up` starts one, and
# `make kafka-down` stops it afterwards (also when vet or the tests fail).
# The exit code is vet's or the tests'.
#
# `scripts/test.sh e2e` (`make test-e2e`) runs, on that same Kafka, only the
# end-to-end tests (examples/e2e), once per client of KAFKA_CLIENTS (default
# "confluent franz"; KAFKA_CLIENT selects the provider, provider/kafkaclient);
# the exit code is the first failing run's.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
KAFKA_PORT=${KAFKA_PORT:-9092}
export KAFKA_PORT
TEST_TIMEOUT=${TEST_TIMEOUT:-14m}
read -r -a TEST_FLAGS <<<"${GO_TEST_FLAGS:-}"
started=0
# PostgreSQL for the projection tests (DATABASE_URL, as KAFKA_BROKERS).
POSTGRES_PORT=${POSTGRES_PORT:-5432}
export POSTGRES_PORT
pg_started=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((started)); then
    echo "test.sh: stopping the Kafka this run started" >&2
    make --no-print-directory kafka-down >&2 || true
  fi
  if ((pg_started)); then
    echo "test.sh: stopping the PostgreSQL this run started" >&2
    docker/postgres-local stop >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${KAFKA_BROKERS:-} ]]; then
  if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
    echo "test.sh: using the Kafka already listening on 127.0.0.1:$KAFKA_PORT (left running)" >&2
  else
    started=1
    make --no-print-directory kafka-up >&2
  fi
  export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
fi
echo "test.sh: KAFKA_BROKERS=$KAFKA_BROKERS" >&2
if [[ -z ${DATABASE_URL:-} ]]; then
  if docker/postgres-local status; then
    echo "test.sh: using the PostgreSQL of docker/postgres-local on port $POSTGRES_PORT (left running)" >&2
  else
    pg_started=1
    docker/postgres-local start >/dev/null
  fi
  DATABASE_URL=$(docker/postgres-local url)
  export DATABASE_URL
fi
echo "test.sh: DATABASE_URL=$DATABASE_URL" >&2

if [[ ${1:-} == e2e ]]; then
  rc=0
  for client in ${KAFKA_CLIENTS:-confluent franz}; do
    echo "test.sh: examples/e2e with KAFKA_CLIENT=$client" >&2
    status=0
    KAFKA_CLIENT=$client "$GO" test -race -count=1 -timeout "$TEST_TIMEOUT" "${TEST_FLAGS[@]}" ./examples/e2e/ || status=$?
    if ((status != 0 && rc == 0)); then rc=$status; fi
  done
  exit "$rc"
fi

# Every module of the workspace (go.work): the library, its adapters, the
# examples, the CLI, the bench and the test suites' own modules.
read -r -a PACKAGES <<<"$(scripts/modules.sh patterns)"
scripts/modules.sh tidy
scripts/modules.sh lean
scripts/modules.sh examples
"$GO" vet "${PACKAGES[@]}"
# Everything but provider/kafka (and the cgo-only bench) builds without cgo:
# the examples then run on franz-go (provider/kafkaclient).
CGO_ENABLED=0 "$GO" build "${PACKAGES[@]}"
CGO_ENABLED=0 "$GO" vet "${PACKAGES[@]}"
# internal/faults and internal/security need clusters of their own (make
# test-faults, make test-security): under CI=true they fail without one.
packages=$(scripts/modules.sh packages) # fails the script when go list does
mapfile -t TEST_PACKAGES <<<"$packages"
"$GO" test -race -count=1 -timeout "$TEST_TIMEOUT" "${TEST_FLAGS[@]}" "${TEST_PACKAGES[@]}"
# The modules that admit the oldest supported Go, tested with it too (the
# go command fetches that toolchain through the module proxy).
scripts/modules.sh oldest
