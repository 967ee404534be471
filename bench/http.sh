#!/usr/bin/env bash
# bench/http.sh: the example writer's commands over HTTP, its default mode
# (a group member: fenced transactions) beside WRITER_GROUP=none (alone,
# unfenced), on the same topic, taking turns, in one run (examples/e2e
# TestMeasureHTTPCommands): 10 000 users on 6 partitions, 64 closed-loop
# clients, 10 s per turn, two rounds. Prints one "name value" line per
# figure and writes them to bench/results/http-<client>.txt.
#
#   KAFKA_BROKERS=127.0.0.1:9092 bench/http.sh            # confluent-kafka-go
#   KAFKA_CLIENT=franz KAFKA_BROKERS=127.0.0.1:9092 bench/http.sh
#   E2E_CLIENTS=256 E2E_DURATION=5s E2E_ROUNDS=3 bench/http.sh
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KAFKA_BROKERS:?set KAFKA_BROKERS to a real broker}"
client=${KAFKA_CLIENT:-confluent}
out=bench/results/http-$client.txt
log=$(mktemp)
trap 'rm -f "$log"' EXIT
(cd examples/e2e && E2E_MEASURE=1 KAFKA_BROKERS=$KAFKA_BROKERS KAFKA_CLIENT=$client \
	go test -count=1 -timeout 20m -run '^TestMeasureHTTPCommands$' -v .) >"$log" 2>&1 || {
	tail -50 "$log"
	exit 1
}
{
	echo "# bench/http.sh, KAFKA_CLIENT=$client, clients=${E2E_CLIENTS:-64}, duration=${E2E_DURATION:-10s}, $(date -u +%Y-%m-%dT%H:%MZ)"
	grep -o 'seeded .*' "$log"
	grep -o 'MEASURE .*' "$log" | sed 's/^MEASURE //'
} | tee "$out"
