#!/usr/bin/env bash
# bench/fleet.sh: how long a fleet of example writers leaves partitions
# unserved at a crash, a restart under the same name, and a clean stop, on a
# real broker, with real processes (examples/e2e TestMeasureFleet): 1 000 000
# events of 100 000 users on 12 partitions, snapshots on (the writer's
# defaults). Prints one "name seconds" line per figure and writes them to
# bench/results/fleet-<client>.txt.
#
#   KAFKA_BROKERS=127.0.0.1:9092 bench/fleet.sh            # confluent-kafka-go
#   KAFKA_CLIENT=franz KAFKA_BROKERS=127.0.0.1:9092 bench/fleet.sh
#   E2E_EVENTS=100000 bench/fleet.sh                       # quick
set -euo pipefail
cd "$(dirname "$0")/.."
: "${KAFKA_BROKERS:?set KAFKA_BROKERS to a real broker}"
client=${KAFKA_CLIENT:-confluent}
out=bench/results/fleet-$client.txt
log=$(mktemp)
trap 'rm -f "$log"' EXIT
(cd examples/e2e && E2E_MEASURE=1 KAFKA_BROKERS=$KAFKA_BROKERS KAFKA_CLIENT=$client \
	go test -count=1 -timeout 20m -run '^TestMeasureFleet$' -v .) >"$log" 2>&1 || {
	tail -50 "$log"
	exit 1
}
{
	echo "# bench/fleet.sh, KAFKA_CLIENT=$client, events=${E2E_EVENTS:-1000000}, $(date -u +%Y-%m-%dT%H:%MZ)"
	grep -o 'seeded .*' "$log"
	grep -o 'MEASURE .*' "$log" | sed 's/^MEASURE //'
	grep -o '[0-9]* updates acknowledged.*' "$log" | cut -c1-200
} | tee "$out"
