#!/usr/bin/env bash
# scripts/test-security.sh — `make test-security`: the Kafka providers'
# security tests (internal/security, TestSecurity*), once per client of
# KAFKA_CLIENTS (default "confluent franz"), against a single Kafka node started
# here with `docker/kafka-local start --secure` on KAFKA_SECURE_PORT (default
# 9592: PLAINTEXT admin 9592, SSL 9593, SASL_SSL 9594), with ACLs on and
# fresh certificates and passwords, and stopped afterwards, also when the
# tests fail. Without its broker the run fails (CI=true: the tests fail
# instead of skipping). The exit code is the first failing run's, else 0.
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
KAFKA_SECURE_PORT=${KAFKA_SECURE_PORT:-9592}
read -r -a TEST_FLAGS <<<"${GO_TEST_FLAGS:-}"

# shellcheck disable=SC2317 # called by the trap
cleanup() {
  local rc=$?
  trap - EXIT INT TERM
  KAFKA_PORT=$KAFKA_SECURE_PORT docker/kafka-local stop >&2 || true
  exit "$rc"
}
trap cleanup EXIT
trap 'exit 130' INT
trap 'exit 143' TERM

KAFKA_PORT=$KAFKA_SECURE_PORT docker/kafka-local start --secure >&2
# KAFKA_SECURE_*: listeners, CA, client keys and passwords (not printed).
eval "$(KAFKA_PORT=$KAFKA_SECURE_PORT docker/kafka-local secure-env)"
if [[ -z ${KAFKA_SECURE_SSL:-} ]]; then
  echo "test-security.sh: docker/kafka-local secure-env gave no KAFKA_SECURE_SSL" >&2
  exit 1
fi
echo "test-security.sh: SSL $KAFKA_SECURE_SSL, SASL_SSL $KAFKA_SECURE_SASL, admin $KAFKA_SECURE_ADMIN" >&2
# KAFKA_BROKERS stays unset: every test here must use the secure listeners.
unset KAFKA_BROKERS
# The tests fail, not skip, should the broker's variables not reach them.
export CI=true
rc=0
for client in ${KAFKA_CLIENTS:-confluent franz}; do
  echo "test-security.sh: KAFKA_CLIENT=$client" >&2
  status=0
  KAFKA_CLIENT=$client "$GO" test -race -count=1 -timeout 5m -run 'Security' "${TEST_FLAGS[@]}" ./internal/security/ || status=$?
  if ((status != 0 && rc == 0)); then rc=$status; fi
done
exit "$rc"
