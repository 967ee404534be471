#!/usr/bin/env bash
# scripts/test-kfake.sh — `make test-kfake`: go test -race over the workspace
# as a developer without a broker runs it: KAFKA_BROKERS and CI unset, so that
# the suites run on kfake, franz-go's in-process Kafka (internal/kafkatest),
# instead of a real broker. internal/faults and internal/security, which need
# clusters of their own, are left out (scripts/modules.sh packages).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
TEST_TIMEOUT=${TEST_TIMEOUT:-14m}
read -r -a TEST_FLAGS <<<"${GO_TEST_FLAGS:-}"
packages=$(scripts/modules.sh packages) # fails the script when go list does
mapfile -t PACKAGES <<<"$packages"
echo "test-kfake.sh: ${#PACKAGES[@]} packages on kfake (KAFKA_BROKERS and CI unset)" >&2
exec env -u KAFKA_BROKERS -u CI "$GO" test -race -count=1 -timeout "$TEST_TIMEOUT" "${TEST_FLAGS[@]}" "${PACKAGES[@]}"
