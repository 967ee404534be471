#!/usr/bin/env bash
# scripts/test-db.sh — `make test-db`: the long projection tests
# (internal/projections: readers killed, paused and grouped on a real
# PostgreSQL and Kafka). Without DATABASE_URL it starts a PostgreSQL with
# docker/postgres-local (port $POSTGRES_PORT, default 5432) and stops it
# afterwards; without KAFKA_BROKERS it uses 127.0.0.1:$KAFKA_PORT when
# something listens there; with nothing there it starts one (make kafka-up)
# under CI=true, where the tests refuse kfake, and stops it afterwards.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
KAFKA_PORT=${KAFKA_PORT:-9092}
export POSTGRES_PORT=${POSTGRES_PORT:-5432}
read -r -a TEST_FLAGS <<<"${GO_TEST_FLAGS:-}"
pg_started=0
kafka_started=0

cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  if ((pg_started)); then
    echo "test-db.sh: stopping the PostgreSQL this run started" >&2
    docker/postgres-local stop >&2 || true
  fi
  if ((kafka_started)); then
    echo "test-db.sh: stopping the Kafka this run started" >&2
    make --no-print-directory kafka-down >&2 || true
  fi
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

if [[ -z ${DATABASE_URL:-} ]]; then
  if ! docker/postgres-local status; then
    pg_started=1
    docker/postgres-local start >/dev/null
  fi
  DATABASE_URL=$(docker/postgres-local url)
  export DATABASE_URL
fi
if [[ -z ${KAFKA_BROKERS:-} ]]; then
  if (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; then
    export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  elif [[ ${CI:-} == true ]]; then
    kafka_started=1
    make --no-print-directory kafka-up >&2
    export KAFKA_BROKERS="127.0.0.1:$KAFKA_PORT"
  fi
fi
echo "test-db.sh: DATABASE_URL=$DATABASE_URL KAFKA_BROKERS=${KAFKA_BROKERS:-(kfake)}" >&2
PROJECTION_LONG_TESTS=1 "$GO" test -race -count=1 -timeout 14m -v "${TEST_FLAGS[@]}" ./internal/projections/ ./projection/ ./projection/postgres/ 2>&1 |
  grep -E '^(=== RUN|--- |PASS|FAIL|ok )|_test.go:[0-9]+:|Error Trace|Error:|Messages:|^ {8}'
exit "${PIPESTATUS[0]}"
