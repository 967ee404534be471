#!/usr/bin/env bash
# scripts/modules.sh — the repository's Go modules (go.work lists them all).
#
#   modules.sh dirs      each module's directory, relative to the root
#   modules.sh patterns  a ./dir/... package pattern per module, for one go
#                        command over the whole workspace
#   modules.sh packages  every package of the workspace but those that need a
#                        cluster of their own (internal/faults: make
#                        test-faults; internal/security: make test-security),
#                        one a line
#   modules.sh tidy      fail when a module's go.mod or go.sum is not what
#                        `go mod tidy` makes of it, built on its own (GOWORK=off)
#   modules.sh lean      fail when a new module that imports repository,
#                        projection and provider/memory lists a heavy module (plot, chi,
#                        prometheus, OpenTelemetry, franz-go, confluent, pgx) in
#                        `go list -m all`, or does not build without cgo
#   modules.sh examples  fail when an example (examples/*/ with a main.go)
#                        does not build and vet, tests included, copied into
#                        a fresh module of its own whose go.mod replaces the
#                        repository's modules with their directories: the
#                        examples import only public packages, so a user can
#                        copy one as it is
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
patterns)
  out=$(dirs) || exit 1
  sed 's#$#/...#' <<<"$out" | tr '\n' ' '
  ;;
packages)
  out=$(dirs) || exit 1
  # shellcheck disable=SC2046 # one pattern per module
  "$GO" list $(sed 's#$#/...#' <<<"$out") | grep -v -x -e '.*/internal/faults' -e '.*/internal/security'
  ;;
tidy)
  out=$(dirs) || exit 1
  root=$PWD
  for dir in $out; do
    check=$dir
    if [[ $dir != . ]] && ! grep -q '^replace' "$dir/go.mod"; then
      # A module users `go install` (cmd/rehydrate) has no replace
      # directives, which the go command refuses there: check it in a copy
      # whose go.mod replaces the repository's modules with their directories,
      # as the others' do.
      check=$(mktemp -d)
      cp -r "$dir"/. "$check"
      self=$(sed -n 's/^module //p' "$dir/go.mod")
      for other in $out; do
        path=$(sed -n 's/^module //p' "$other/go.mod")
        if [[ $path != "$self" ]]; then
          (cd "$check" && "$GO" mod edit -replace "$path=$root/$other")
        fi
      done
    fi
    tidy=0
    (cd "$check" && GOWORK=off "$GO" mod tidy -diff) || tidy=$?
    if [[ $check != "$dir" ]]; then rm -rf "$check"; fi
    if ((tidy != 0)); then
      echo "modules.sh: $dir: go.mod/go.sum not tidy (run: cd $dir && GOWORK=off go mod tidy)" >&2
      exit 1
    fi
    # The repository's modules require each other at the version they are
    # released at together (see the README's Modules), never a placeholder.
    if grep -q 'rehydrate/rehydrate[^ ]* v0\.0\.0-' "$dir/go.mod"; then
      echo "modules.sh: $dir/go.mod requires a placeholder version of a module of this repository" >&2
      exit 1
    fi
  done
  ;;
lean)
  dir=$(mktemp -d)
  trap 'rm -rf "$dir"' EXIT
  root=$PWD
  cat >"$dir/main.go" <<'GO'
package main

import (
	"fmt"

	"github.com/rehydrate/rehydrate/projection"
	"github.com/rehydrate/rehydrate/provider/memory"
	"github.com/rehydrate/rehydrate/repository"
)

func main() {
	p, err := memory.New(1)
	fmt.Println(p != nil, err, repository.ErrNotFound, projection.NewMemoryStore[int]() != nil)
}
GO
  (
    cd "$dir"
    export GOWORK=off
    "$GO" mod init example.com/lean >/dev/null 2>&1
    "$GO" mod edit -replace "github.com/rehydrate/rehydrate=$root"
    "$GO" mod tidy >/dev/null 2>&1
    heavy=$("$GO" list -m all | grep -E 'gonum|go-chi|prometheus|opentelemetry|franz-go|confluent|jackc' || true)
    if [[ -n $heavy ]]; then
      echo "modules.sh: a service importing repository and provider/memory requires:" >&2
      echo "$heavy" >&2
      exit 1
    fi
    CGO_ENABLED=0 "$GO" build -o /dev/null .
  )
  ;;
examples)
  out=$(dirs) || exit 1
  root=$PWD
  tmp=$(mktemp -d)
  trap 'rm -rf "$tmp"' EXIT
  for main in examples/*/main.go; do
    name=$(basename "$(dirname "$main")")
    dir=$tmp/$name
    mkdir "$dir"
    cp -r "$(dirname "$main")"/. "$dir"
    # The examples module's requirements; each of the repository's modules
    # (the examples' own included) replaced by its directory, which overrides
    # the relative replace directives copied along.
    cp examples/go.mod examples/go.sum "$dir"
    (
      cd "$dir"
      export GOWORK=off GOFLAGS=-mod=mod
      "$GO" mod edit -module "example.com/$name"
      for other in $out; do
        path=$(sed -n 's/^module //p' "$root/$other/go.mod")
        "$GO" mod edit -replace "$path=$root/$other"
      done
      "$GO" mod edit -require github.com/rehydrate/rehydrate/examples@v0.1.0
      if ! out=$("$GO" vet ./... 2>&1); then
        echo "modules.sh: examples/$name does not build in a module of its own:" >&2
        echo "$out" >&2
        exit 1
      fi
    )
  done
  ;;
oldest)
  oldest=${GO_OLDEST#go}
  out=$(dirs) || exit 1
  for dir in $out; do
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
  echo "usage: $0 dirs|patterns|packages|tidy|lean|examples|oldest" >&2
  exit 2
  ;;
esac
