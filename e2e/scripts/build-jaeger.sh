#!/usr/bin/env bash
# Builds Jaeger v2 from its Go module (github.com/jaegertracing/jaeger/cmd/jaeger, pinned by
# JAEGER_VERSION in lib.sh and e2e/controlplane/jaeger/go.mod) into a cache folder keyed by
# that version, for traces in the local environment (services.sh up jaeger). Skips the build
# when the binary is there. Prints the binary's path on stdout, and only that.
# A cold build took 5.5 to 9 minutes on 2 cores shared with other builds.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ -x "$LC_JAEGER_BIN/jaeger" ]; then
  echo "$LC_JAEGER_BIN/jaeger"
  exit 0
fi

need_cmd go "install Go 1.26 or later (https://go.dev/doc/install) and put it on PATH."
dir="$LC_REPO/e2e/controlplane/jaeger"
pinned=$(sed -n 's#^\s*github.com/jaegertracing/jaeger \(v[^ ]*\).*#\1#p' "$dir/go.mod")
[ "$pinned" = "$JAEGER_VERSION" ] \
  || die "e2e/controlplane/jaeger/go.mod requires github.com/jaegertracing/jaeger $pinned but lib.sh pins JAEGER_VERSION=$JAEGER_VERSION. Fix: run 'cd e2e/controlplane/jaeger && go get -tool github.com/jaegertracing/jaeger/cmd/jaeger@$JAEGER_VERSION && go mod tidy', or set JAEGER_VERSION=$pinned."

mkdir -p "$LC_JAEGER_BIN" "$LC_CACHE"
# Several processes may ask at once: one builds, the others wait.
exec 8>"$LC_CACHE/.jaeger-build.lock"
flock -w 3600 8 || die "timed out waiting for another build of jaeger ($LC_CACHE/.jaeger-build.lock)."
if [ -x "$LC_JAEGER_BIN/jaeger" ]; then
  echo "$LC_JAEGER_BIN/jaeger"
  exit 0
fi
if ! (cd "$dir" && go mod download -x >/dev/null 2>"$LC_CACHE/go-mod-download-jaeger.log"); then
  tail -n 3 "$LC_CACHE/go-mod-download-jaeger.log" >&2
  die "cannot download the Jaeger Go modules (GOPROXY=$(go env GOPROXY)). Fix: make the Go module proxy reachable, or set GOPROXY."
fi
log "building jaeger $JAEGER_VERSION from github.com/jaegertracing/jaeger/cmd/jaeger (a cold build takes 5-10 minutes on 2 cores)"
start=$SECONDS
(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$LC_JAEGER_BIN/jaeger.tmp" github.com/jaegertracing/jaeger/cmd/jaeger) >&2 \
  || die "go build of github.com/jaegertracing/jaeger/cmd/jaeger failed (see output above). Fix: check 'go env' and free disk space, then re-run."
mv "$LC_JAEGER_BIN/jaeger.tmp" "$LC_JAEGER_BIN/jaeger"
log "built jaeger in $((SECONDS - start))s"
echo "$LC_JAEGER_BIN/jaeger"
