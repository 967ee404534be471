#!/usr/bin/env bash
# scripts/test-faults.sh — `make test-faults`: the fault tests of
# internal/faults against a three-broker Kafka that they may crash, started
# here with docker/kafka-local on KAFKA_FAULT_PORT (default 9192, 9193, 9194)
# and stopped afterwards, also when the tests fail. The nodes get a second
# listener for the network partition tests (KAFKA_PROXIED_OFFSET, default
# 10: they listen on KAFKA_FAULT_PORT+10.. and advertise +15.., where the
# tests' proxies listen; docker/kafka-local). They run once per Kafka
# client of KAFKA_CLIENTS (default "confluent franz"; KAFKA_CLIENT selects
# the provider, provider/kafkaclient). Without its cluster the run fails
# (CI=true: the tests fail instead of skipping). FAULTS_TIMEOUT bounds each
# client's run (default 30m: 14m was hit on a loaded 2-core machine). The
# exit code is the first failing run's, else 0.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
export KAFKA_FAULT_PORT=${KAFKA_FAULT_PORT:-9192}
export KAFKA_PROXIED_OFFSET=${KAFKA_PROXIED_OFFSET:-10}
read -r -a TEST_FLAGS <<<"${GO_TEST_FLAGS:-}"

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
if [[ -z $KAFKA_FAULT_BROKERS ]]; then
  echo "test-faults.sh: docker/kafka-local start --brokers 3 printed no broker list" >&2
  exit 1
fi
export KAFKA_FAULT_BROKERS
# The tests fail, not skip, should the cluster's variables not reach them.
export CI=true
echo "test-faults.sh: KAFKA_FAULT_BROKERS=$KAFKA_FAULT_BROKERS" >&2
rc=0
for client in ${KAFKA_CLIENTS:-confluent franz}; do
  echo "test-faults.sh: KAFKA_CLIENT=$client" >&2
  set +e
  KAFKA_CLIENT=$client "$GO" test -race -count=1 -timeout "${FAULTS_TIMEOUT:-30m}" -v "${TEST_FLAGS[@]}" ./internal/faults/ 2>&1 | grep -v '^%[0-9]|' | tee "${FAULTS_LOG:-/dev/null}" | grep -E '^(=== RUN|--- |PASS|FAIL|ok )|RESULT|_test.go:[0-9]+:|Error Trace|Error:|Messages:|^ {8}'
  status=${PIPESTATUS[0]}
  set -e
  if ((status != 0 && rc == 0)); then rc=$status; fi
done
exit "$rc"
