#!/usr/bin/env bash
# scripts/modules.sh — the repository's Go modules (go.work lists them all).
#
#   modules.sh dirs      each module's directory, relative to the root
#   modules.sh patterns  a ./dir/... package pattern per module, for one go
#                        command over the whole workspace
#   modules.sh tidy      fail when a module's go.mod or go.sum is not what
#                        `go mod tidy` makes of it, built on its own (GOWORK=off)
#   modules.sh oldest    go vet and go test -race, with the oldest Go release
#                        still supported ($GO_OLDEST), every module whose go
#                        directive admits it, each on its own (GOWORK=off)
set -euo pipefail
cd "$(dirname -- "${BASH_SOURCE[0]}")/.."

GO=${GO:-go}
# The oldest supported release: the previous minor version, latest patch.
GO_OLDEST=${GO_OLDEST:-go1.25.12}
TEST_TIMEOUT=${TEST_TIMEOUT:-14m}

dirs() { "$GO" list -m -f '{{.Dir}}' | sed "s#^$PWD#.#"; }

case ${1:-} in
dirs) dirs ;;
patterns) dirs | sed 's#$#/...#' | tr '\n' ' ' ;;
tidy)
  for dir in $(dirs); do
    if ! (cd "$dir" && GOWORK=off "$GO" mod tidy -diff); then
      echo "modules.sh: $dir: go.mod/go.sum not tidy (run: cd $dir && GOWORK=off go mod tidy)" >&2
      exit 1
    fi
  done
  ;;
oldest)
  oldest=${GO_OLDEST#go}
  for dir in $(dirs); do
    want=$(cd "$dir" && "$GO" mod edit -json | sed -n 's/^[[:space:]]*"Go": "\(.*\)",*$/\1/p')
    # Admits it when its go directive is not newer than the oldest release.
    if [[ $(printf '%s\n%s\n' "$want" "$oldest" | sort -V | tail -n 1) != "$oldest" ]]; then
      continue
    fi
    echo "modules.sh: $dir (go $want) with $GO_OLDEST" >&2
    (cd "$dir" && GOWORK=off GOTOOLCHAIN=$GO_OLDEST "$GO" vet ./... &&
      GOWORK=off GOTOOLCHAIN=$GO_OLDEST "$GO" test -race -count=1 -timeout "$TEST_TIMEOUT" ./...)
  done
  ;;
*)
  echo "usage: $0 dirs|patterns|tidy|oldest" >&2
  exit 2
  ;;
esac
