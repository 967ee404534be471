#!/usr/bin/env bash
# examples/run.sh writer|reader — what `make run` and `make run-reader` do.
#
# With KAFKA_BROKERS set, that cluster is used as it is. Otherwise Kafka is
# expected on 127.0.0.1:$KAFKA_PORT (default 9092); when nothing answers
# there, one is started and left running for the next runs:
#   - `make kafka-up` when a Docker engine answers, or Java and Maven (or
#     the launcher's jar cache) are there, or KAFKA_MODE=docker|local;
#   - else (or with KAFKA_MODE=memory) devkafka, an in-memory
#     Kafka-protocol broker (kfake), in the background. It loses everything
#     when it stops: `kill $(cat tmp/devkafka-$KAFKA_PORT.pid)`.
# Then the example is built into tmp/examples and run in the foreground
# (exec: Ctrl-C and SIGTERM reach it directly and it shuts down cleanly).
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
KAFKA_PORT=${KAFKA_PORT:-9092}
KAFKA_MODE=${KAFKA_MODE:-auto}
BIN=tmp/examples
DEVKAFKA_PID=tmp/devkafka-$KAFKA_PORT.pid
DEVKAFKA_LOG=tmp/devkafka-$KAFKA_PORT.log

case ${1:-} in
writer) pkg=./examples/simple-cqrs-writer name=simple-cqrs-writer ;;
reader) pkg=./examples/reader name=reader ;;
*) echo "usage: $0 writer|reader" >&2; exit 2 ;;
esac

say() { printf 'run: %s\n' "$*" >&2; }
answers() { (exec 3<>"/dev/tcp/127.0.0.1/$KAFKA_PORT") 2>/dev/null; }
devkafka_running() { [[ -f $DEVKAFKA_PID ]] && kill -0 "$(<"$DEVKAFKA_PID")" 2>/dev/null; }

can_kafka_up() {
  case $KAFKA_MODE in
  docker | local) return 0 ;;
  memory) return 1 ;;
  esac
  if command -v docker >/dev/null 2>&1 && docker info >/dev/null 2>&1; then return 0; fi
  command -v java >/dev/null 2>&1 || return 1
  command -v mvn >/dev/null 2>&1 || compgen -G 'docker/.cache/lib-*/.stamp' >/dev/null
}

banner() {
  local line
  line=$(printf '!%.0s' {1..78})
  printf '%s\n' "$line" "$@" "$line" >&2
}

start_devkafka() {
  mkdir -p "$BIN"
  "$GO" build -o "$BIN/devkafka" ./examples/internal/cmd/devkafka
  # Its own session (or process group): Ctrl-C on the writer must not stop it.
  if command -v setsid >/dev/null 2>&1; then
    setsid nohup "$BIN/devkafka" -port "$KAFKA_PORT" >"$DEVKAFKA_LOG" 2>&1 </dev/null &
  else
    set -m
    nohup "$BIN/devkafka" -port "$KAFKA_PORT" >"$DEVKAFKA_LOG" 2>&1 </dev/null &
    set +m
  fi
  echo $! >"$DEVKAFKA_PID"
  for _ in $(seq 100); do
    answers && return 0
    kill -0 "$(<"$DEVKAFKA_PID")" 2>/dev/null || break
    sleep 0.1
  done
  say "devkafka did not start:"
  cat "$DEVKAFKA_LOG" >&2
  exit 1
}

if [[ -z ${KAFKA_BROKERS:-} ]]; then
  export KAFKA_BROKERS=127.0.0.1:$KAFKA_PORT
  if answers; then
    say "using the Kafka that answers at $KAFKA_BROKERS"
  elif can_kafka_up; then
    say "no Kafka answers at $KAFKA_BROKERS: starting one (make kafka-up)"
    make --no-print-directory kafka-up KAFKA_MODE="${KAFKA_MODE/memory/auto}" >&2
  else
    start_devkafka
    banner "No Kafka answered at $KAFKA_BROKERS, and there is neither a Docker engine nor Java+Maven," \
      "so devkafka, an IN-MEMORY Kafka-protocol broker (kfake), now runs in the background" \
      "(pid $(<"$DEVKAFKA_PID"), log $DEVKAFKA_LOG)." \
      "Restarting the writer restores its users from it; NOTHING SURVIVES STOPPING devkafka." \
      "Readers use KAFKA_BROKERS=$KAFKA_BROKERS (make run-reader does)." \
      "Stop it: kill \$(cat $DEVKAFKA_PID)"
  fi
  if devkafka_running; then
    export KAFKA_IN_MEMORY=1
  fi
fi

mkdir -p "$BIN"
"$GO" build -o "$BIN/$name" "$pkg"
say "starting $name (KAFKA_BROKERS=$KAFKA_BROKERS)"
exec "$BIN/$name"
