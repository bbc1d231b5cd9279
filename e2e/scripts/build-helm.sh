#!/usr/bin/env bash
# Builds Helm from its Go module (helm.sh/helm/v4, pinned by HELM_VERSION in lib.sh) into a
# cache folder keyed by that version, for the chart tests. Skips the build when the binary
# is there. Prints the binary's path on stdout, and only that (the test harness reads it).
# A cold build takes 3-6 minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ -x "$LC_HELM_BIN/helm" ]; then
  echo "$LC_HELM_BIN/helm"
  exit 0
fi

need_cmd go "install Go 1.26 or later (https://go.dev/doc/install) and put it on PATH."
dir="$LC_REPO/e2e/controlplane/helm"
pinned=$(sed -n 's#^\s*helm.sh/helm/v4 \(v[^ ]*\).*#\1#p' "$dir/go.mod")
[ "$pinned" = "$HELM_VERSION" ] \
  || die "e2e/controlplane/helm/go.mod requires helm.sh/helm/v4 $pinned but lib.sh pins HELM_VERSION=$HELM_VERSION. Fix: run 'cd e2e/controlplane/helm && go get -tool helm.sh/helm/v4/cmd/helm@$HELM_VERSION && go mod tidy', or set HELM_VERSION=$pinned."

mkdir -p "$LC_HELM_BIN" "$LC_CACHE"
# Tests may ask for Helm from several processes at once: one builds, the others wait.
exec 8>"$LC_CACHE/.helm-build.lock"
flock -w 1800 8 || die "timed out waiting for another build of helm ($LC_CACHE/.helm-build.lock)."
if [ -x "$LC_HELM_BIN/helm" ]; then
  echo "$LC_HELM_BIN/helm"
  exit 0
fi
if ! (cd "$dir" && go mod download -x >/dev/null 2>"$LC_CACHE/go-mod-download-helm.log"); then
  tail -n 3 "$LC_CACHE/go-mod-download-helm.log" >&2
  die "cannot download the Helm Go modules (GOPROXY=$(go env GOPROXY)). Fix: make the Go module proxy reachable, or set GOPROXY."
fi
log "building helm $HELM_VERSION from helm.sh/helm/v4/cmd/helm (a cold build takes minutes on 2 cores)"
start=$SECONDS
# The version is stamped the way Helm's own Makefile does; the Kubernetes version Helm
# assumes by default comes from the client-go in go.mod (build info).
ldflags="-s -w -X helm.sh/helm/v4/internal/version.version=$HELM_VERSION"
ldflags+=" -X helm.sh/helm/v4/internal/version.metadata= -X helm.sh/helm/v4/internal/version.gitTreeState=clean"
(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$LC_HELM_BIN/helm.tmp" helm.sh/helm/v4/cmd/helm) >&2 \
  || die "go build of helm.sh/helm/v4/cmd/helm failed (see output above). Fix: check 'go env' and free disk space, then re-run."
mv "$LC_HELM_BIN/helm.tmp" "$LC_HELM_BIN/helm"
log "built helm in $((SECONDS - start))s"
echo "$LC_HELM_BIN/helm"
