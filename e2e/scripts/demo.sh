#!/usr/bin/env bash
# `make demo`: the release story on the local cluster. Brings up (or reuses) the real
# services and the control plane, builds the binaries, then runs e2e's listacompra-demo:
# v1.0.0 install, v1.1.0 upgrade with a migration, v1.2.0 rolled back on its p95 latency,
# v1.3.0 stopped by a failing migration, v1.2.1 rolled back by its smoke test, all under
# load, then a restore of the (pgBackRest-backed) database after a corruption, with
# progress as it happens.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LC_REPO"

need_cmd go "install Go 1.26 or later (https://go.dev/doc/install) and put it on PATH."
need_cmd cargo "install Rust with rustup (https://rustup.rs) and put cargo on PATH."
apt_install curl util-linux
log "starting the services and the local cluster (reused when up)"
bash e2e/scripts/services.sh up >/dev/null
bash e2e/scripts/cluster.sh up >/dev/null

log "building listacompra-api, listacompra-operator and the demo"
cargo build --locked -q -p listacompra-api -p listacompra-operator -p kubectl-listacompra -p e2e --bins
target_dir=$(cargo metadata --format-version 1 --no-deps | python3 -c 'import json,sys; print(json.load(sys.stdin)["target_directory"])')
"$target_dir/debug/listacompra-demo"

cat <<MSG

Look around with:
  export PATH="$LC_BIN:\$PATH" KUBECONFIG="$LC_KUBECONFIG"
  kubectl -n listacompra-demo describe lcr listacompra
  kubectl -n listacompra-demo get events --sort-by=.lastTimestamp
MSG
