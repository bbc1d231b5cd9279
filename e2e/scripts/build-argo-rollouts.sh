#!/usr/bin/env bash
# Builds Argo Rollouts' controller from its Go module (github.com/argoproj/argo-rollouts/cmd/
# rollouts-controller, pinned by ARGO_ROLLOUTS_VERSION in lib.sh and e2e/peers/argo-rollouts/
# go.mod) into a cache folder keyed by that version, with the module's CRDs beside it:
#   $LC_ARGO_ROLLOUTS/bin/rollouts-controller
#   $LC_ARGO_ROLLOUTS/crds/*-crd.yaml
# `make bench-compare` runs it beside the operator. Skips the build when the binary is there.
# Prints the folder on stdout, and only that. A cold build takes about 5 minutes on 2 cores.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

if [ -x "$LC_ARGO_ROLLOUTS/bin/rollouts-controller" ]; then
  echo "$LC_ARGO_ROLLOUTS"
  exit 0
fi

need_cmd go "install Go 1.26 or later (https://go.dev/doc/install) and put it on PATH."
dir="$LC_REPO/e2e/peers/argo-rollouts"
pinned=$(sed -n 's#^\s*github.com/argoproj/argo-rollouts \(v[^ ]*\).*#\1#p' "$dir/go.mod")
[ "$pinned" = "$ARGO_ROLLOUTS_VERSION" ] \
  || die "e2e/peers/argo-rollouts/go.mod requires github.com/argoproj/argo-rollouts $pinned but lib.sh pins ARGO_ROLLOUTS_VERSION=$ARGO_ROLLOUTS_VERSION. Fix: run 'cd e2e/peers/argo-rollouts && go get -tool github.com/argoproj/argo-rollouts/cmd/rollouts-controller@$ARGO_ROLLOUTS_VERSION && go mod tidy' (and copy the module's replace block), or set ARGO_ROLLOUTS_VERSION=$pinned."

mkdir -p "$LC_ARGO_ROLLOUTS/bin" "$LC_ARGO_ROLLOUTS/crds" "$LC_CACHE"
# Several processes may ask at once: one builds, the others wait.
exec 8>"$LC_CACHE/.argo-rollouts-build.lock"
flock -w 3600 8 || die "timed out waiting for another build of Argo Rollouts ($LC_CACHE/.argo-rollouts-build.lock)."
if [ -x "$LC_ARGO_ROLLOUTS/bin/rollouts-controller" ]; then
  echo "$LC_ARGO_ROLLOUTS"
  exit 0
fi
if ! (cd "$dir" && go mod download -x >/dev/null 2>"$LC_CACHE/go-mod-download-argo-rollouts.log"); then
  tail -n 3 "$LC_CACHE/go-mod-download-argo-rollouts.log" >&2
  die "cannot download the Argo Rollouts Go modules (GOPROXY=$(go env GOPROXY)). Fix: make the Go module proxy reachable, or set GOPROXY."
fi
module=$(cd "$dir" && go list -m -f '{{.Dir}}' github.com/argoproj/argo-rollouts)
cp "$module"/manifests/crds/*-crd.yaml "$LC_ARGO_ROLLOUTS/crds/"
chmod u+w "$LC_ARGO_ROLLOUTS"/crds/*
log "building rollouts-controller $ARGO_ROLLOUTS_VERSION from github.com/argoproj/argo-rollouts (a cold build takes about 5 minutes on 2 cores)"
start=$SECONDS
(cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "-s -w" -o "$LC_ARGO_ROLLOUTS/bin/rollouts-controller.tmp" github.com/argoproj/argo-rollouts/cmd/rollouts-controller) >&2 \
  || die "go build of github.com/argoproj/argo-rollouts/cmd/rollouts-controller failed (see output above). Fix: check 'go env' and free disk space, then re-run."
mv "$LC_ARGO_ROLLOUTS/bin/rollouts-controller.tmp" "$LC_ARGO_ROLLOUTS/bin/rollouts-controller"
log "built rollouts-controller in $((SECONDS - start))s"
echo "$LC_ARGO_ROLLOUTS"
