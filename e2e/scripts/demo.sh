#!/usr/bin/env bash
# `make demo`: bring up the real services and the local cluster, and say how to use them.
set -euo pipefail
source "$(dirname "$0")/lib.sh"
cd "$LC_REPO"

need_cmd go "install Go 1.26 or later (https://go.dev/doc/install) and put it on PATH."
apt_install curl util-linux
bash e2e/scripts/services.sh up >/dev/null
bash e2e/scripts/cluster.sh up >/dev/null

echo
bash e2e/scripts/cluster.sh status
bash e2e/scripts/services.sh status
cat <<MSG

The local cluster and services are up. Use them from this shell with:

  export PATH="$LC_BIN:\$PATH" KUBECONFIG="$LC_KUBECONFIG"
  kubectl get nodes
  set -a; . "$LC_ENV_FILE"; set +a     # DATABASE_URL, REDIS_URL, RABBITMQ_URL, PROMETHEUS_URL

Stop everything with: make down
MSG
