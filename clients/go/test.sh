#!/bin/sh
# The Go client's own checks: gofmt, go vet and go test, with the Go toolchain on PATH and no module downloads (the
# client has no dependencies). On Go 1.21+ this includes the log/slog Handler and the standard library's slogtest;
# older toolchains (Debian 12's Go 1.19) build and test the dependency-free core only, and this says so.
set -eu
cd "$(dirname "$0")"
if ! command -v go >/dev/null 2>&1; then
  echo "go is not installed: the Go client's tests were not run (apt-get install golang-go)"
  exit 0
fi
export GOPROXY=off GOFLAGS=-mod=mod
unformatted=$(gofmt -l .)
if [ -n "$unformatted" ]; then
  echo "not gofmt-formatted: $unformatted"
  exit 1
fi
version=$(go env GOVERSION)
case "$version" in
  go1.1[0-9] | go1.1[0-9].* | go1.20 | go1.20.*)
    echo "$version: log/slog needs Go 1.21, so handler.go is not built here; testing the core client" ;;
esac
go vet ./...
go test -count=1 ./...
