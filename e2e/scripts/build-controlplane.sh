#!/usr/bin/env bash
# Builds the local control plane from Go modules into a cache folder keyed by version:
# kube-apiserver, kube-controller-manager, kube-scheduler, kubectl (k8s.io/kubernetes),
# etcd (go.etcd.io/etcd/server/v3) and kwok + kwokctl (sigs.k8s.io/kwok).
# Skips every binary that is already there. A cold build takes 15-30 minutes on 2 cores.
# Also builds Helm (build-helm.sh, its own version-keyed folder) for the chart tests.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

need_cmd go "install Go 1.26 or later (https://go.dev/doc/install) and put it on PATH."
go_minor=$(go env GOVERSION | sed -E 's/^go1\.([0-9]+).*/\1/')
[ "${go_minor:-0}" -ge 26 ] || die "Go $(go env GOVERSION) is too old. Fix: install Go 1.26 or later."

mkdir -p "$LC_BIN"
cp_dir="$LC_REPO/e2e/controlplane"
kube_minor=$(echo "$KUBE_VERSION" | cut -d. -f2)

# Stamp the true release so `kubectl version` and Helm see it (the module build would say v0.0.0).
kube_ldflags="-s -w"
for pkg in k8s.io/component-base/version k8s.io/client-go/pkg/version; do
  kube_ldflags+=" -X $pkg.gitVersion=$KUBE_VERSION -X $pkg.gitMajor=1 -X $pkg.gitMinor=$kube_minor"
  kube_ldflags+=" -X $pkg.gitTreeState=clean -X $pkg.buildDate=1970-01-01T00:00:00Z"
done

# check_proxy fails early, with one line, when modules cannot be downloaded.
check_proxy() {
  local dir=$1
  if ! (cd "$dir" && go mod download -x >/dev/null 2>"$LC_CACHE/go-mod-download.log"); then
    tail -n 3 "$LC_CACHE/go-mod-download.log" >&2
    die "cannot download Go modules for $dir (GOPROXY=$(go env GOPROXY)). Fix: make the Go module proxy reachable, or set GOPROXY."
  fi
}

# build MODULE_DIR LDFLAGS PACKAGE OUTPUT
build() {
  local dir=$1 ldflags=$2 pkg=$3 out=$4
  if [ -x "$LC_BIN/$out" ]; then return 0; fi
  log "building $out from $pkg (cold builds take minutes on 2 cores)"
  local start=$SECONDS
  (cd "$dir" && CGO_ENABLED=0 go build -trimpath -ldflags "$ldflags" -o "$LC_BIN/$out.tmp" "$pkg") \
    || die "go build of $pkg failed (see output above). Fix: check 'go env' and free disk space, then re-run."
  mv "$LC_BIN/$out.tmp" "$LC_BIN/$out"
  log "built $out in $((SECONDS - start))s"
}

# Helm (a few minutes cold; skipped when present). Its path goes to stdout there: not here.
bash "$LC_REPO/e2e/scripts/build-helm.sh" >/dev/null

all=(kube-apiserver kube-controller-manager kube-scheduler kubectl etcd kwok kwokctl)
missing=0
for b in "${all[@]}"; do [ -x "$LC_BIN/$b" ] || missing=1; done
if [ "$missing" = 0 ]; then
  log "control plane $KUBE_VERSION binaries present in $LC_BIN"
  exit 0
fi

mkdir -p "$LC_CACHE"
for d in kubernetes etcd kwok; do check_proxy "$cp_dir/$d"; done

build "$cp_dir/kubernetes" "$kube_ldflags" k8s.io/kubernetes/cmd/kube-apiserver kube-apiserver
build "$cp_dir/kubernetes" "$kube_ldflags" k8s.io/kubernetes/cmd/kube-controller-manager kube-controller-manager
build "$cp_dir/kubernetes" "$kube_ldflags" k8s.io/kubernetes/cmd/kube-scheduler kube-scheduler
build "$cp_dir/kubernetes" "$kube_ldflags" k8s.io/kubernetes/cmd/kubectl kubectl
build "$cp_dir/etcd" "-s -w" go.etcd.io/etcd/server/v3 etcd
kwok_ldflags="-s -w -X sigs.k8s.io/kwok/pkg/consts.Version=${KWOK_VERSION#v} -X sigs.k8s.io/kwok/pkg/consts.KubeVersion=${KUBE_VERSION#v}"
build "$cp_dir/kwok" "$kwok_ldflags" sigs.k8s.io/kwok/cmd/kwok kwok
build "$cp_dir/kwok" "$kwok_ldflags" sigs.k8s.io/kwok/cmd/kwokctl kwokctl
log "control plane $KUBE_VERSION ready in $LC_BIN"
