# Shared settings and helpers for the local cluster and service scripts.
# Sourced, never run. Every value can be overridden from the environment.

# Pinned versions. KUBE_VERSION must match the k8s-openapi feature in Cargo.toml (v1_36).
KUBE_VERSION="${KUBE_VERSION:-v1.36.3}"
ETCD_VERSION="${ETCD_VERSION:-v3.6.16}"
KWOK_VERSION="${KWOK_VERSION:-v0.8.0}"
# Helm for the chart tests (helm.sh/helm/v4, built by build-helm.sh). Must match
# e2e/controlplane/helm/go.mod.
HELM_VERSION="${HELM_VERSION:-v4.3.1}"

LC_CACHE="${LC_CACHE:-${XDG_CACHE_HOME:-$HOME/.cache}/listacompra}"
# Binaries are keyed by every pinned version so a bump rebuilds instead of mixing.
LC_BIN="${LC_BIN:-$LC_CACHE/k8s-${KUBE_VERSION}-etcd-${ETCD_VERSION}-kwok-${KWOK_VERSION}/bin}"
# Helm has its own folder, keyed by its version, so bumping it does not rebuild Kubernetes.
LC_HELM_BIN="${LC_HELM_BIN:-$LC_CACHE/helm-${HELM_VERSION}/bin}"
# Jaeger v2 (the OpenTelemetry-collector based binary), for traces in the local environment;
# the version of its Go module github.com/jaegertracing/jaeger.
JAEGER_VERSION="${JAEGER_VERSION:-v1.76.0}"
LC_JAEGER_BIN="${LC_JAEGER_BIN:-$LC_CACHE/jaeger-${JAEGER_VERSION}/bin}"
# Argo Rollouts' controller, the peer `make bench-compare` measures the operator against (its
# Go module github.com/argoproj/argo-rollouts, built by build-argo-rollouts.sh; must match
# e2e/peers/argo-rollouts/go.mod; its build needs Go 1.26.1 or later). v1.10.2 would need
# Go 1.26.10.
ARGO_ROLLOUTS_VERSION="${ARGO_ROLLOUTS_VERSION:-v1.10.1}"
LC_ARGO_ROLLOUTS="${LC_ARGO_ROLLOUTS:-$LC_CACHE/argo-rollouts-${ARGO_ROLLOUTS_VERSION}}"
# The S3-protocol server of the local environment (attachments): s3s-fs from crates.io, an S3
# server over a folder, built from the s3s project (SigV4 headers and presigned URLs checked).
S3S_FS_VERSION="${S3S_FS_VERSION:-0.14.1}"
LC_S3S_ROOT="${LC_S3S_ROOT:-$LC_CACHE/s3s-fs-${S3S_FS_VERSION}}"
# Runtime state (data folders, logs, pid files) of everything the scripts start. As root it
# lives under /var/lib, because PostgreSQL runs as the postgres user and cannot enter /root.
if [ "$(id -u)" = 0 ]; then _lc_state_default=/var/lib/listacompra
else _lc_state_default="${XDG_STATE_HOME:-$HOME/.local/state}/listacompra"; fi
LC_STATE="${LC_STATE:-$_lc_state_default}"
# The file that tests and people source to find every endpoint (written by the up commands).
LC_ENV_FILE="${LC_ENV_FILE:-$LC_STATE/env}"

# Loopback ports, each configurable.
LC_APISERVER_PORT="${LC_APISERVER_PORT:-56443}"
LC_PG_PORT="${LC_PG_PORT:-55432}"
LC_REDIS_PORT="${LC_REDIS_PORT:-56379}"
LC_AMQP_PORT="${LC_AMQP_PORT:-55672}"
LC_RABBIT_DIST_PORT="${LC_RABBIT_DIST_PORT:-55673}"
LC_EPMD_PORT="${LC_EPMD_PORT:-54369}"
LC_PROM_PORT="${LC_PROM_PORT:-59090}"
LC_AM_PORT="${LC_AM_PORT:-59093}"
# Jaeger may start in the middle of a test run, when thousands of client sockets hold ports of
# the ephemeral range (32768-60999 on Linux): its ports sit below it, or a bind can fail.
LC_JAEGER_OTLP_GRPC_PORT="${LC_JAEGER_OTLP_GRPC_PORT:-14317}"
LC_JAEGER_OTLP_HTTP_PORT="${LC_JAEGER_OTLP_HTTP_PORT:-14318}"
LC_JAEGER_QUERY_PORT="${LC_JAEGER_QUERY_PORT:-16686}"
LC_JAEGER_QUERY_GRPC_PORT="${LC_JAEGER_QUERY_GRPC_PORT:-16685}"
LC_JAEGER_HEALTH_PORT="${LC_JAEGER_HEALTH_PORT:-13133}"
# The S3 server, below the ephemeral range too; its bucket and (local, throwaway) keys.
LC_S3_PORT="${LC_S3_PORT:-19000}"
LC_S3_BUCKET="${LC_S3_BUCKET:-listacompra-attachments}"
LC_S3_ACCESS_KEY="${LC_S3_ACCESS_KEY:-listacompra-local}"
LC_S3_SECRET_KEY="${LC_S3_SECRET_KEY:-listacompra-local-secret-key}"
# TLS listeners next to the plain ones (a test CA signs them; see services.sh). Defaults
# follow the plain ports (AMQPS one below AMQP, as 5671/5672), so setting those moves these.
LC_REDIS_TLS_PORT="${LC_REDIS_TLS_PORT:-$((LC_REDIS_PORT + 1))}"
LC_AMQP_TLS_PORT="${LC_AMQP_TLS_PORT:-$((LC_AMQP_PORT - 1))}"
LC_PG_PASSWORD="${LC_PG_PASSWORD:-listacompra}"
LC_CLUSTER_NAME="${LC_CLUSTER_NAME:-listacompra}"
LC_KUBECONFIG="${LC_KUBECONFIG:-$LC_STATE/kubeconfig}"

LC_REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)"

log()  { printf '\033[1m==>\033[0m %s\n' "$*" >&2; }
# die prints one message naming the cause and the fix, and exits.
die()  { printf '\033[31merror:\033[0m %s\n' "$*" >&2; exit 1; }

need_cmd() {
  command -v "$1" >/dev/null 2>&1 || die "$1 is not installed. Fix: $2"
}

# port_free PORT: true when no socket listens on PORT (read from /proc/net/tcp{,6}). Not a
# connect probe: a connect to an unused port of the ephemeral range can connect the socket to
# itself (TCP simultaneous open), and its TIME-WAIT then keeps the service from binding.
port_free() {
  local hex
  hex=$(printf '%04X' "$1")
  ! awk -v p=":$hex" '$4 == "0A" && substr($2, length($2) - 4) == p { found = 1 } END { exit !found }' \
    /proc/net/tcp /proc/net/tcp6 2>/dev/null
}

# require_port_free NAME PORT VAR: die naming the port and the variable that moves it.
require_port_free() {
  port_free "$2" || die "port $2 for $1 is already in use by another process ('ss -ltnp sport = :$2' shows which). Fix: stop that process, or pick another port with $3=<port>."
}

# pid_alive PIDFILE: true when the file names a running process.
pid_alive() {
  [ -s "$1" ] && kill -0 "$(head -n1 "$1")" 2>/dev/null
}

# stop_pid NAME PIDFILE: TERM, wait up to 20 s, then KILL.
stop_pid() {
  local name=$1 file=$2 pid
  pid_alive "$file" || { rm -f "$file"; return 0; }
  pid=$(head -n1 "$file")
  log "stopping $name (pid $pid)"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.5; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$file"
}

# env_set KEY VALUE: record KEY=VALUE in $LC_ENV_FILE (replacing an older value).
env_set() {
  mkdir -p "$(dirname "$LC_ENV_FILE")"
  touch "$LC_ENV_FILE"
  local tmp="$LC_ENV_FILE.tmp.$$"
  grep -v "^$1=" "$LC_ENV_FILE" > "$tmp" || true
  printf '%s=%s\n' "$1" "$2" >> "$tmp"
  mv "$tmp" "$LC_ENV_FILE"
}

# env_unset KEY...: forget keys in $LC_ENV_FILE.
env_unset() {
  [ -f "$LC_ENV_FILE" ] || return 0
  local tmp="$LC_ENV_FILE.tmp.$$" pattern
  pattern=$(printf '^%s=|' "$@"); pattern=${pattern%|}
  grep -Ev "$pattern" "$LC_ENV_FILE" > "$tmp" || true
  mv "$tmp" "$LC_ENV_FILE"
}

# wait_for DESCRIPTION SECONDS COMMAND...: retry COMMAND until it succeeds or time runs out.
wait_for() {
  local what=$1 secs=$2; shift 2
  local end=$((SECONDS + secs))
  until "$@" >/dev/null 2>&1; do
    (( SECONDS < end )) || return 1
    sleep 0.5
  done
}

# deb_installed PKG: whether dpkg has PKG installed. Not `dpkg -s`: it also succeeds for a
# package removed but not purged (state config-files), whose programs are gone.
deb_installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}

# apt_install PKG...: install Debian packages that are missing (needs root, as on these machines).
# Several scripts may ask at once (make test builds in the background): one installs at a
# time (a lock of ours, then dpkg's own, waited for rather than failed on).
apt_install() {
  local missing=()
  for p in "$@"; do deb_installed "$p" || missing+=("$p"); done
  (( ${#missing[@]} )) || return 0
  mkdir -p "$LC_CACHE"
  (
    flock -w 1800 6 || die "timed out waiting for another install ($LC_CACHE/.apt.lock)."
    local todo=()
    for p in "${missing[@]}"; do deb_installed "$p" || todo+=("$p"); done
    (( ${#todo[@]} )) || exit 0
    log "installing Debian packages: ${todo[*]}"
    local sudo=""; [ "$(id -u)" = 0 ] || sudo="sudo"
    local wait_dpkg=(-o DPkg::Lock::Timeout=600)
    if [ ! -f "$LC_CACHE/.apt-updated" ] || [ -n "$(find "$LC_CACHE/.apt-updated" -mmin +720 2>/dev/null)" ]; then
      $sudo apt-get "${wait_dpkg[@]}" update -qq >/dev/null || die "apt-get update failed. Fix: check that the Debian mirror is reachable."
      touch "$LC_CACHE/.apt-updated"
    fi
    DEBIAN_FRONTEND=noninteractive $sudo apt-get "${wait_dpkg[@]}" install -y -qq --no-install-recommends "${todo[@]}" >/dev/null \
      || die "apt-get install ${todo[*]} failed. Fix: run it by hand to see why (disk space, mirror)."
  ) 6>"$LC_CACHE/.apt.lock"
}

# with_lock CMD...: run CMD holding the state folder's lock, so that concurrent test
# processes starting the same component wait for each other instead of racing.
# Daemons started under the lock must close it (9>&-), or they would hold it forever.
with_lock() {
  mkdir -p "$LC_STATE"
  (
    flock -w 1800 9 || die "timed out waiting for $LC_STATE/.lock held by another start."
    "$@"
  ) 9>"$LC_STATE/.lock"
}
