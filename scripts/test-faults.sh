#!/usr/bin/env bash
# scripts/test-faults.sh — `make test-faults`: the fault tests of
# internal/faults against a three-broker Kafka that they may crash, started
# here with docker/kafka-local on KAFKA_FAULT_PORT (default 9192, 9193, 9194)
# and stopped afterwards, also when the tests fail. The exit code is the
# tests'.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
export KAFKA_FAULT_PORT=${KAFKA_FAULT_PORT:-9192}

# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  KAFKA_PORT=$KAFKA_FAULT_PORT docker/kafka-local stop >&2 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

KAFKA_FAULT_BROKERS=$(KAFKA_PORT=$KAFKA_FAULT_PORT docker/kafka-local start --brokers 3 | tail -n 1)
export KAFKA_FAULT_BROKERS
echo "test-faults.sh: KAFKA_FAULT_BROKERS=$KAFKA_FAULT_BROKERS" >&2
"$GO" test -race -count=1 -timeout 14m -v ./internal/faults/ 2>&1 | grep -v '^%[0-9]|' | tee "${FAULTS_LOG:-/dev/null}" | grep -E '^(=== RUN|--- |PASS|FAIL|ok )|RESULT|Error Trace|Error:|Messages:'
exit "${PIPESTATUS[0]}"
