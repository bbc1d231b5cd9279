#!/usr/bin/env bash
# The local Kubernetes cluster: real etcd, kube-apiserver, kube-controller-manager and
# kube-scheduler built from Go modules, plus kwok for nodes and pods, run as plain processes
# by kwokctl's binary runtime. Loopback only. Nothing is downloaded at start.
#
#   cluster.sh up       build when missing, start when not running (idempotent)
#   cluster.sh down     stop and delete the cluster
#   cluster.sh status   print the server version and nodes, or "down"
#   cluster.sh logs     print the tail of every component log
set -euo pipefail
source "$(dirname "$0")/lib.sh"

export KWOK_WORKDIR="$LC_STATE/kwok"
export KWOK_KUBE_VERSION="$KUBE_VERSION" # the flags kwokctl passes depend on it
export PATH="$LC_BIN:$PATH" # kwokctl calls kubectl: use the one built with the cluster
LC_KWOK_NODES="${LC_KWOK_NODES:-2}"
cluster_dir="$KWOK_WORKDIR/clusters/$LC_CLUSTER_NAME"

kctl() { "$LC_BIN/kubectl" --kubeconfig "$LC_KUBECONFIG" "$@"; }
running() { [ -f "$LC_KUBECONFIG" ] && kctl get --raw /readyz >/dev/null 2>&1; }

# The cluster's settings (kwokctl.yaml) as a hash, recorded when it is created: a running
# cluster made from other settings (an older checkout) is made again.
settings_hash() { sha256sum "$LC_REPO/e2e/controlplane/kwokctl.yaml" | cut -d' ' -f1; }

up() {
  "$LC_REPO/e2e/scripts/build-controlplane.sh"
  if running && [ "$(cat "$LC_STATE/kwokctl.sha256" 2>/dev/null)" != "$(settings_hash)" ]; then
    log "the running cluster was made from other settings than e2e/controlplane/kwokctl.yaml; making it again"
    "$LC_BIN/kwokctl" delete cluster --name "$LC_CLUSTER_NAME" >/dev/null 2>&1 || true
  fi
  if running; then
    log "cluster $LC_CLUSTER_NAME already running ($(kctl version -o json | sed -n 's/.*"gitVersion": "\(v[^"]*\)".*/\1/p' | tail -n1))"
    # The test stages of this checkout (applying is idempotent; a new stage joins at once).
    apply_stages
  else
    if [ -d "$cluster_dir" ]; then
      log "removing stale cluster state in $cluster_dir"
      "$LC_BIN/kwokctl" delete cluster --name "$LC_CLUSTER_NAME" >/dev/null 2>&1 || rm -rf "$cluster_dir"
    fi
    require_port_free kube-apiserver "$LC_APISERVER_PORT" LC_APISERVER_PORT
    mkdir -p "$LC_STATE"
    rm -f "$LC_KUBECONFIG"
    log "starting Kubernetes $KUBE_VERSION (etcd $ETCD_VERSION, kwok $KWOK_VERSION) on 127.0.0.1:$LC_APISERVER_PORT"
    local start=$SECONDS
    if ! "$LC_BIN/kwokctl" --config "$LC_REPO/e2e/controlplane/kwokctl.yaml" \
        create cluster --name "$LC_CLUSTER_NAME" --runtime binary \
        --kube-apiserver-port "$LC_APISERVER_PORT" --kube-authorization --kube-admission \
        --kube-apiserver-binary "$LC_BIN/kube-apiserver" \
        --kube-controller-manager-binary "$LC_BIN/kube-controller-manager" \
        --kube-scheduler-binary "$LC_BIN/kube-scheduler" \
        --kwok-controller-binary "$LC_BIN/kwok" --etcd-binary "$LC_BIN/etcd" \
        --kubeconfig "$LC_KUBECONFIG" --wait 3m >"$LC_STATE/kwokctl-create.log" 2>&1 9>&-; then
      tail -n 15 "$LC_STATE/kwokctl-create.log" >&2
      logs_tail 20
      die "the cluster did not start (log: $LC_STATE/kwokctl-create.log; component logs above). Fix: read the logs, then '$0 down' and retry."
    fi
    apply_stages
    settings_hash >"$LC_STATE/kwokctl.sha256"
    "$LC_BIN/kwokctl" scale node --name "$LC_CLUSTER_NAME" --replicas "$LC_KWOK_NODES" >>"$LC_STATE/kwokctl-create.log" 2>&1 \
      || die "could not create $LC_KWOK_NODES kwok nodes. Fix: see '$0 logs'."
    kctl wait --for=condition=Ready nodes --all --timeout=120s >/dev/null \
      || die "kwok nodes did not become Ready. Fix: see '$0 logs'."
    log "cluster up in $((SECONDS - start))s"
  fi
  env_set KUBECONFIG "$LC_KUBECONFIG"
  env_set LC_CLUSTER_LOGS "$cluster_dir/logs"
  env_set LC_BIN "$LC_BIN"
  env_set LC_KUBE_VERSION "$KUBE_VERSION"
}

# kwok reads Stages from the cluster (enableCRDs in kwokctl.yaml): apply kwok's own default
# node and pod stages from its Go module, plus the project's test stages.
apply_stages() {
  local kwok_dir
  kwok_dir=$(cd "$LC_REPO/e2e/controlplane/kwok" && go list -m -f '{{.Dir}}' sigs.k8s.io/kwok) \
    || die "cannot find the sigs.k8s.io/kwok module. Fix: make the Go module proxy reachable and retry."
  local stages=(
    "$kwok_dir/kustomize/stage/node/fast/node-initialize.yaml"
    "$kwok_dir/kustomize/stage/node/heartbeat-with-lease/node-heartbeat-with-lease.yaml"
    "$kwok_dir/kustomize/stage/pod/fast/pod-ready.yaml"
    "$kwok_dir/kustomize/stage/pod/fast/pod-complete.yaml"
    "$kwok_dir/kustomize/stage/pod/fast/pod-delete.yaml"
    "$LC_REPO"/e2e/controlplane/stages/*.yaml
  )
  local f args=()
  for f in "${stages[@]}"; do args+=(-f "$f"); done
  kctl apply "${args[@]}" >/dev/null || die "could not apply the kwok stages. Fix: see '$0 logs'."
}

down() {
  if [ -d "$cluster_dir" ]; then
    log "stopping cluster $LC_CLUSTER_NAME"
    [ -x "$LC_BIN/kwokctl" ] && "$LC_BIN/kwokctl" delete cluster --name "$LC_CLUSTER_NAME" >/dev/null 2>&1 || true
    # kwokctl stops its components by pid file; make sure none outlives a failed delete.
    local f
    for f in "$cluster_dir"/pids/*.pid; do [ -f "$f" ] && stop_pid "$(basename "$f" .pid)" "$f"; done
    rm -rf "$cluster_dir"
  fi
  rm -f "$LC_KUBECONFIG"
  env_unset KUBECONFIG LC_CLUSTER_LOGS LC_BIN LC_KUBE_VERSION
}

logs_tail() {
  local n=${1:-40} f
  for f in "$cluster_dir"/logs/*.log; do
    [ -f "$f" ] || continue
    printf '\n----- %s (last %s lines) -----\n' "$(basename "$f")" "$n" >&2
    tail -n "$n" "$f" >&2
  done
}

status() {
  if running; then
    kctl version 2>/dev/null | grep -i server
    kctl get nodes --no-headers 2>/dev/null | awk '{print "node " $1 " " $2}'
  else
    echo down
  fi
}

case "${1:-status}" in
  up) with_lock up; echo "$LC_ENV_FILE" ;;
  down) down ;;
  status) status ;;
  logs) logs_tail "${2:-40}" ;;
  *) die "unknown command '${1}'. Fix: use up, down, status or logs." ;;
esac
