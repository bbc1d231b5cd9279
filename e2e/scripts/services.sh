#!/usr/bin/env bash
# Real PostgreSQL, Redis, RabbitMQ, Alertmanager and Prometheus from Debian packages, an
# S3-protocol server (s3s-fs from crates.io, build-s3s-fs.sh) and Jaeger v2 built from its Go
# module (build-jaeger.sh), on loopback only.
#
#   services.sh up [postgres|redis|rabbitmq|alertmanager|prometheus|s3|jaeger ...]
#                                                              install when missing, start (idempotent)
#   services.sh down [NAME ...]                                stop what these scripts started
#   services.sh status                                         one line per service
#   services.sh rabbitmqctl ARG...                             rabbitmqctl against our broker
#                                                              (e.g. close_all_connections why)
#
# Ports (LC_PG_PORT, LC_REDIS_PORT, LC_AMQP_PORT, LC_PROM_PORT, ...) and the state folder
# (LC_STATE) are configurable; see lib.sh. Endpoints are written to $LC_ENV_FILE.
#
# Alertmanager runs config/alertmanager as shipped (copied to $LC_STATE/alertmanager/config,
# re-read on every `up`); its Slack webhook URL is the file LC_SLACK_WEBHOOK_URL_FILE names,
# which tests point at a local receiver. Prometheus sends its alerts there.
#
# With LC_PGBACKREST_STANZA set, PostgreSQL archives its WAL with pgBackRest (Debian's
# package) into a posix repository in $LC_STATE/postgres/pgbackrest, and the stanza is
# created; the env file then names the PGBACKREST_* options a backup needs (LC_PGBACKREST_ENV,
# space-separated NAME=VALUE) and the user that owns the repository (LC_PGBACKREST_UID/GID),
# and what starting the same server by hand takes (LC_PG_DIR, LC_PG_PORT, the server side's
# LC_PGBACKREST_CONFIG): a restore test stops it and runs it as a StatefulSet's pod.
# The backup tests start such a PostgreSQL of their own (state folder and port).
#
# Jaeger keeps traces in memory; OTLP on LC_JAEGER_OTLP_GRPC_PORT/LC_JAEGER_OTLP_HTTP_PORT,
# its UI and query API on LC_JAEGER_QUERY_PORT. The env file names LC_OTLP_ENDPOINT (give it
# to a program as OTEL_EXPORTER_OTLP_ENDPOINT) and LC_JAEGER_QUERY_URL.
#
# Redis and RabbitMQ also listen with TLS (LC_REDIS_TLS_PORT, LC_AMQP_TLS_PORT), with a
# server certificate for 127.0.0.1/localhost signed by a test CA made here ($LC_STATE/tls);
# the env file names them: LC_REDIS_TLS_URL, LC_AMQP_TLS_URL, LC_TLS_CA_FILE (the CA to
# trust) and LC_TLS_OTHER_CA_FILE (a CA that did not sign them, for negative tests).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

# What `up` starts by default; Jaeger (a Go build of 5-10 minutes on a cold machine) only
# when asked for by name (`up jaeger`, or a test that needs it). `down` stops them all.
ALL=(postgres redis rabbitmq alertmanager prometheus s3)
OPTIONAL=(jaeger)

# --- PostgreSQL -------------------------------------------------------------------------
pg_dir="$LC_STATE/postgres"
pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1)
  [ -n "$d" ] || die "PostgreSQL server binaries not found under /usr/lib/postgresql. Fix: apt-get install postgresql."
  echo "$d"
}
# as_pg CMD...: PostgreSQL refuses to run as root, so root runs it as the postgres user.
as_pg() {
  if [ "$(id -u)" = 0 ]; then runuser -u postgres -- "$@"; else "$@"; fi
}
postgres_running() { as_pg "$(pg_bin)/pg_ctl" -D "$pg_dir/data" status >/dev/null 2>&1; }
postgres_up() {
  apt_install postgresql
  local bin; bin=$(pg_bin)
  if postgres_running; then log "postgres already running on 127.0.0.1:$LC_PG_PORT"; else
    require_port_free postgres "$LC_PG_PORT" LC_PG_PORT
    mkdir -p "$pg_dir"
    [ "$(id -u)" = 0 ] && chown postgres: "$pg_dir"
    if [ ! -s "$pg_dir/data/PG_VERSION" ]; then
      log "initialising PostgreSQL data folder $pg_dir/data"
      local pw="$pg_dir/.pwfile"
      printf '%s\n' "$LC_PG_PASSWORD" > "$pw"
      [ "$(id -u)" = 0 ] && chown postgres: "$pw"
      as_pg "$bin/initdb" -D "$pg_dir/data" -U postgres --pwfile="$pw" \
        --auth-host=scram-sha-256 --auth-local=trust -E UTF8 >"$pg_dir/initdb.log" 2>&1 \
        || { tail -n5 "$pg_dir/initdb.log" >&2; die "initdb failed (log: $pg_dir/initdb.log). Fix: remove $pg_dir and retry."; }
      rm -f "$pw"
    fi
    local archive=()
    if [ -n "${LC_PGBACKREST_STANZA:-}" ]; then
      apt_install pgbackrest
      mkdir -p "$pg_dir/pgbackrest/repo" "$pg_dir/pgbackrest/log" "$pg_dir/pgbackrest/lock"
      # The server side reads the same options from a file (archive_command runs with the
      # server's environment, which pg_ctl does not pass on).
      local conf="$pg_dir/pgbackrest/pgbackrest.conf" k v global="[global]" stanza="[$LC_PGBACKREST_STANZA]"
      while IFS='=' read -r k v; do
        k=${k#PGBACKREST_}; k=${k,,}; k=${k//_/-}
        case "$k" in
          stanza) ;;
          pg*) stanza+=$'\n'"$k=$v" ;;
          *) global+=$'\n'"$k=$v" ;;
        esac
      done < <(pgbackrest_options)
      printf '%s\n\n%s\n' "$global" "$stanza" > "$conf"
      [ "$(id -u)" = 0 ] && chown -R postgres: "$pg_dir/pgbackrest"
      archive=(-c archive_mode=on -c wal_level=replica
        -c "archive_command='pgbackrest --config=$conf --stanza=$LC_PGBACKREST_STANZA archive-push %p'")
    fi
    log "starting postgres on 127.0.0.1:$LC_PG_PORT"
    # authentication_timeout 10 s (default 60): DROP DATABASE waits until every backend has
    # absorbed its barrier, and a backend whose client stopped halfway through the SCRAM
    # handshake (a test process or pod killed, a runtime that stopped polling) absorbs it
    # only when this timeout ends it; every test's database drop would wait that long.
    as_pg "$bin/pg_ctl" -D "$pg_dir/data" -l "$pg_dir/postgres.log" -w -t 60 \
      -o "-c listen_addresses=127.0.0.1 -p $LC_PG_PORT -c unix_socket_directories=$pg_dir -c max_connections=300 -c fsync=off -c authentication_timeout=10s ${archive[*]}" \
      start >/dev/null 9>&- \
      || { tail -n5 "$pg_dir/postgres.log" >&2; die "postgres did not start (log: $pg_dir/postgres.log). Fix: read the log; a stale $pg_dir/data/postmaster.pid can be removed."; }
  fi
  as_pg "$bin/psql" -h "$pg_dir" -p "$LC_PG_PORT" -U postgres -tAc "SELECT 1 FROM pg_database WHERE datname='listacompra'" | grep -q 1 \
    || as_pg "$bin/createdb" -h "$pg_dir" -p "$LC_PG_PORT" -U postgres listacompra
  if [ -n "${LC_PGBACKREST_STANZA:-}" ]; then
    # Idempotent: an existing stanza of this cluster is left as it is.
    local options; mapfile -t options < <(pgbackrest_options)
    as_pg env "${options[@]}" pgbackrest stanza-create \
      >"$pg_dir/pgbackrest/stanza-create.log" 2>&1 \
      || { tail -n5 "$pg_dir/pgbackrest/stanza-create.log" >&2; die "pgbackrest stanza-create failed (log: $pg_dir/pgbackrest/stanza-create.log)."; }
    env_set LC_PGBACKREST_ENV "$(pgbackrest_options | tr '\n' ' ')"
    env_set LC_PGBACKREST_UID "$(stat -c %u "$pg_dir/data")"
    env_set LC_PGBACKREST_GID "$(stat -c %g "$pg_dir/data")"
    env_set LC_PGBACKREST_CONFIG "$pg_dir/pgbackrest/pgbackrest.conf"
    env_set LC_PG_DIR "$pg_dir"
    env_set LC_PG_PORT "$LC_PG_PORT"
  fi
  env_set LC_POSTGRES_ADMIN_URL "postgres://postgres:$LC_PG_PASSWORD@127.0.0.1:$LC_PG_PORT/postgres"
  env_set DATABASE_URL "postgres://postgres:$LC_PG_PASSWORD@127.0.0.1:$LC_PG_PORT/listacompra"
}
# The pgBackRest options of this cluster and its repository, one PGBACKREST_NAME=VALUE a line.
pgbackrest_options() {
  printf '%s\n' \
    "PGBACKREST_STANZA=$LC_PGBACKREST_STANZA" \
    "PGBACKREST_REPO1_PATH=$pg_dir/pgbackrest/repo" \
    "PGBACKREST_REPO1_RETENTION_FULL=2" \
    "PGBACKREST_START_FAST=y" \
    "PGBACKREST_LOG_PATH=$pg_dir/pgbackrest/log" \
    "PGBACKREST_LOCK_PATH=$pg_dir/pgbackrest/lock" \
    "PGBACKREST_PG1_PATH=$pg_dir/data" \
    "PGBACKREST_PG1_PORT=$LC_PG_PORT" \
    "PGBACKREST_PG1_SOCKET_PATH=$pg_dir" \
    "PGBACKREST_PG1_USER=postgres"
}
postgres_down() {
  if [ -d "$pg_dir/data" ] && postgres_running; then
    log "stopping postgres"
    as_pg "$(pg_bin)/pg_ctl" -D "$pg_dir/data" -m fast -w stop >/dev/null || true
  fi
  env_unset LC_POSTGRES_ADMIN_URL DATABASE_URL
}

# --- Test CA and server certificate (TLS listeners of Redis and RabbitMQ) --------------
tls_dir="$LC_STATE/tls"
# tls_ca NAME: a self-signed CA ($tls_dir/NAME.pem, key NAME.key), made once.
tls_ca() {
  [ -s "$tls_dir/$1.pem" ] && return 0
  openssl req -x509 -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
    -keyout "$tls_dir/$1.key" -out "$tls_dir/$1.pem" -days 3650 -subj "/CN=ListaCompra $1" \
    -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
    >/dev/null 2>&1 || die "openssl could not make the test CA $tls_dir/$1.pem. Fix: remove $tls_dir and retry."
}
tls_certs() {
  apt_install openssl
  mkdir -p "$tls_dir"
  tls_ca ca
  tls_ca other-ca
  if [ ! -s "$tls_dir/server.pem" ]; then
    log "making a test CA and a server certificate for 127.0.0.1 in $tls_dir"
    openssl req -new -nodes -newkey ec -pkeyopt ec_paramgen_curve:prime256v1 \
      -keyout "$tls_dir/server.key" -out "$tls_dir/server.csr" -subj "/CN=localhost" >/dev/null 2>&1 \
      && printf '%s\n' "basicConstraints=critical,CA:FALSE" "keyUsage=critical,digitalSignature,keyEncipherment" \
        "extendedKeyUsage=serverAuth" "subjectAltName=IP:127.0.0.1,DNS:localhost" > "$tls_dir/server.ext" \
      && openssl x509 -req -in "$tls_dir/server.csr" -CA "$tls_dir/ca.pem" -CAkey "$tls_dir/ca.key" \
        -CAcreateserial -out "$tls_dir/server.pem" -days 3650 -extfile "$tls_dir/server.ext" >/dev/null 2>&1 \
      || die "openssl could not make the server certificate $tls_dir/server.pem. Fix: remove $tls_dir and retry."
  fi
  # RabbitMQ may run as another user (Debian's rabbitmq); the keys are test keys.
  chmod 644 "$tls_dir"/*.key "$tls_dir"/*.pem
  env_set LC_TLS_CA_FILE "$tls_dir/ca.pem"
  env_set LC_TLS_OTHER_CA_FILE "$tls_dir/other-ca.pem"
}

# --- Redis ------------------------------------------------------------------------------
redis_dir="$LC_STATE/redis"
redis_up() {
  apt_install redis-server
  tls_certs
  # A Redis started by an older version of this script has no TLS port: restart it.
  if pid_alive "$redis_dir/redis.pid" \
    && ! redis-cli -p "$LC_REDIS_TLS_PORT" --tls --cacert "$tls_dir/ca.pem" ping >/dev/null 2>&1; then
    log "restarting redis: it runs without its TLS port $LC_REDIS_TLS_PORT"
    redis_down
  fi
  if pid_alive "$redis_dir/redis.pid"; then log "redis already running on 127.0.0.1:$LC_REDIS_PORT (TLS $LC_REDIS_TLS_PORT)"; else
    require_port_free redis "$LC_REDIS_PORT" LC_REDIS_PORT
    require_port_free "redis TLS" "$LC_REDIS_TLS_PORT" LC_REDIS_TLS_PORT
    mkdir -p "$redis_dir"
    log "starting redis on 127.0.0.1:$LC_REDIS_PORT (TLS $LC_REDIS_TLS_PORT)"
    # Debian's redis-server is built with TLS; clients are not asked for certificates.
    redis-server --bind 127.0.0.1 --port "$LC_REDIS_PORT" --dir "$redis_dir" --daemonize yes \
      --tls-port "$LC_REDIS_TLS_PORT" --tls-cert-file "$tls_dir/server.pem" --tls-key-file "$tls_dir/server.key" \
      --tls-ca-cert-file "$tls_dir/ca.pem" --tls-auth-clients no \
      --pidfile "$redis_dir/redis.pid" --logfile "$redis_dir/redis.log" --save "" --protected-mode yes 9>&- \
      || die "redis-server did not start (log: $redis_dir/redis.log)."
    wait_for redis 20 redis-cli -p "$LC_REDIS_PORT" ping \
      || { tail -n5 "$redis_dir/redis.log" >&2; die "redis did not answer PING within 20 s (log: $redis_dir/redis.log)."; }
    wait_for "redis TLS" 20 redis-cli -p "$LC_REDIS_TLS_PORT" --tls --cacert "$tls_dir/ca.pem" ping \
      || { tail -n5 "$redis_dir/redis.log" >&2; die "redis did not answer PING over TLS on $LC_REDIS_TLS_PORT within 20 s (log: $redis_dir/redis.log)."; }
  fi
  env_set REDIS_URL "redis://127.0.0.1:$LC_REDIS_PORT/0"
  env_set LC_REDIS_TLS_URL "rediss://127.0.0.1:$LC_REDIS_TLS_PORT/0"
}
redis_down() { stop_pid redis "$redis_dir/redis.pid"; env_unset REDIS_URL LC_REDIS_TLS_URL; }

# --- RabbitMQ ---------------------------------------------------------------------------
rabbit_dir="$LC_STATE/rabbitmq"
rabbit_env() {
  export HOME="$rabbit_dir" # the Erlang cookie lives here
  export RABBITMQ_NODENAME="listacompra@localhost"
  export RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 RABBITMQ_NODE_PORT="$LC_AMQP_PORT"
  export RABBITMQ_DIST_PORT="$LC_RABBIT_DIST_PORT" ERL_EPMD_PORT="$LC_EPMD_PORT" ERL_EPMD_ADDRESS=127.0.0.1
  export RABBITMQ_MNESIA_BASE="$rabbit_dir/mnesia" RABBITMQ_LOG_BASE="$rabbit_dir/log"
  export RABBITMQ_PID_FILE="$rabbit_dir/rabbitmq.pid" RABBITMQ_CONFIG_FILE="$rabbit_dir/rabbitmq.conf"
  export RABBITMQ_ENABLED_PLUGINS_FILE="$rabbit_dir/enabled_plugins" RABBITMQ_ADVANCED_CONFIG_FILE="$rabbit_dir/advanced.config"
  export RABBITMQ_CONF_ENV_FILE="$rabbit_dir/rabbitmq-env.conf"
}
rabbit_ctl() { (rabbit_env; /usr/lib/rabbitmq/bin/rabbitmqctl "$@"); }
rabbitmq_up() {
  apt_install rabbitmq-server
  tls_certs
  # A RabbitMQ started by an older version of this script has no TLS listener: restart it.
  if pid_alive "$rabbit_dir/rabbitmq.pid" && ! grep -q '^listeners.ssl.default' "$rabbit_dir/rabbitmq.conf" 2>/dev/null; then
    log "restarting rabbitmq: it runs without its TLS listener"
    rabbitmq_down
  fi
  if pid_alive "$rabbit_dir/rabbitmq.pid"; then log "rabbitmq already running on 127.0.0.1:$LC_AMQP_PORT (TLS $LC_AMQP_TLS_PORT)"; else
    require_port_free rabbitmq "$LC_AMQP_PORT" LC_AMQP_PORT
    require_port_free "rabbitmq TLS" "$LC_AMQP_TLS_PORT" LC_AMQP_TLS_PORT
    require_port_free "rabbitmq distribution" "$LC_RABBIT_DIST_PORT" LC_RABBIT_DIST_PORT
    mkdir -p "$rabbit_dir/log" "$rabbit_dir/mnesia"
    : > "$rabbit_dir/rabbitmq-env.conf"
    echo "[]." > "$rabbit_dir/enabled_plugins"
    # Keep Erlang distribution on loopback too (it listens on all interfaces by default).
    echo "[{kernel, [{inet_dist_use_interface, {127,0,0,1}}]}]." > "$rabbit_dir/advanced.config"
    cat > "$rabbit_dir/rabbitmq.conf" <<CONF
listeners.tcp.default = 127.0.0.1:$LC_AMQP_PORT
listeners.ssl.default = 127.0.0.1:$LC_AMQP_TLS_PORT
ssl_options.cacertfile = $tls_dir/ca.pem
ssl_options.certfile = $tls_dir/server.pem
ssl_options.keyfile = $tls_dir/server.key
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
loopback_users.guest = true
log.console = false
log.file.level = info
disk_free_limit.absolute = 50MB
CONF
    log "starting rabbitmq on 127.0.0.1:$LC_AMQP_PORT (TLS $LC_AMQP_TLS_PORT)"
    (rabbit_env; setsid nohup /usr/lib/rabbitmq/bin/rabbitmq-server >"$rabbit_dir/startup.log" 2>&1 < /dev/null 9>&- &)
    local i
    for i in $(seq 1 120); do
      [ -s "$rabbit_dir/rabbitmq.pid" ] && break
      sleep 0.5
    done
    rabbit_ctl -q await_startup --timeout 60 >/dev/null 2>&1 \
      || { tail -n 10 "$rabbit_dir/startup.log" >&2; die "rabbitmq did not start within 60 s (logs: $rabbit_dir/startup.log, $rabbit_dir/log). Fix: read the logs; check ports $LC_AMQP_PORT, $LC_RABBIT_DIST_PORT, $LC_EPMD_PORT."; }
  fi
  wait_for "rabbitmq TLS" 30 bash -c "openssl s_client -connect 127.0.0.1:$LC_AMQP_TLS_PORT -CAfile '$tls_dir/ca.pem' -verify_return_error -brief </dev/null" \
    || { tail -n 20 "$rabbit_dir"/log/*.log >&2 2>/dev/null; die "rabbitmq does not answer TLS on 127.0.0.1:$LC_AMQP_TLS_PORT within 30 s (logs: $rabbit_dir/log, last lines above). Fix: read the logs; check port $LC_AMQP_TLS_PORT (LC_AMQP_TLS_PORT)."; }
  env_set RABBITMQ_URL "amqp://guest:guest@127.0.0.1:$LC_AMQP_PORT/%2f"
  env_set LC_AMQP_TLS_URL "amqps://guest:guest@127.0.0.1:$LC_AMQP_TLS_PORT/%2f"
}
rabbitmq_down() {
  if pid_alive "$rabbit_dir/rabbitmq.pid"; then
    log "stopping rabbitmq"
    rabbit_ctl -q shutdown >/dev/null 2>&1 || stop_pid rabbitmq "$rabbit_dir/rabbitmq.pid"
  fi
  rm -f "$rabbit_dir/rabbitmq.pid"
  # Erlang starts its own epmd on our port: stop it too, or it outlives us.
  ERL_EPMD_PORT="$LC_EPMD_PORT" epmd -kill >/dev/null 2>&1 || true
  env_unset RABBITMQ_URL LC_AMQP_TLS_URL
}

# --- Alertmanager -----------------------------------------------------------------------
am_dir="$LC_STATE/alertmanager"
alertmanager_up() {
  # Debian's package brings the server (prometheus-alertmanager) and amtool.
  apt_install prometheus-alertmanager
  mkdir -p "$am_dir/config/secrets" "$am_dir/data"
  # The shipped configuration, unchanged (checked before it replaces the running copy); only
  # the webhook URL (a Secret in a cluster) is ours.
  amtool check-config "$LC_REPO/config/alertmanager/alertmanager.yml" >/dev/null \
    || die "config/alertmanager/alertmanager.yml is invalid: run 'amtool check-config config/alertmanager/alertmanager.yml'."
  cp "$LC_REPO/config/alertmanager/alertmanager.yml" "$am_dir/config/"
  local url_file="$am_dir/config/secrets/slack-webhook-url"
  # Until a test points it at its receiver, notifications go to a closed loopback port.
  [ -s "$url_file" ] || printf 'http://127.0.0.1:9/no-slack-receiver\n' > "$url_file"
  if pid_alive "$am_dir/alertmanager.pid"; then
    curl -fsS -X POST "http://127.0.0.1:$LC_AM_PORT/-/reload" >/dev/null \
      || die "alertmanager on 127.0.0.1:$LC_AM_PORT did not reload its configuration (log: $am_dir/alertmanager.log)."
    log "alertmanager already running on 127.0.0.1:$LC_AM_PORT (configuration reloaded)"
  else
    require_port_free alertmanager "$LC_AM_PORT" LC_AM_PORT
    log "starting alertmanager on 127.0.0.1:$LC_AM_PORT"
    # No cluster: one instance, nothing listening beyond loopback. Started in the config
    # folder: the configuration names its Slack URL file by a relative path.
    (cd "$am_dir/config" && exec setsid nohup prometheus-alertmanager --config.file="$am_dir/config/alertmanager.yml" \
      --storage.path="$am_dir/data" --web.listen-address="127.0.0.1:$LC_AM_PORT" \
      --cluster.listen-address= \
      >"$am_dir/alertmanager.log" 2>&1 < /dev/null 9>&-) &
    echo $! > "$am_dir/alertmanager.pid"
    wait_for alertmanager 30 curl -fsS "http://127.0.0.1:$LC_AM_PORT/-/ready" \
      || { tail -n5 "$am_dir/alertmanager.log" >&2; die "alertmanager did not become ready within 30 s (log: $am_dir/alertmanager.log)."; }
  fi
  env_set LC_ALERTMANAGER_URL "http://127.0.0.1:$LC_AM_PORT"
  env_set LC_SLACK_WEBHOOK_URL_FILE "$url_file"
}
alertmanager_down() {
  stop_pid alertmanager "$am_dir/alertmanager.pid"
  env_unset LC_ALERTMANAGER_URL LC_SLACK_WEBHOOK_URL_FILE
}

# --- Prometheus -------------------------------------------------------------------------
prom_dir="$LC_STATE/prometheus"
prometheus_up() {
  apt_install prometheus
  mkdir -p "$prom_dir/targets" "$prom_dir/rules"
  # Tests and the workload runner add scrape targets by dropping JSON files into targets/.
  cat > "$prom_dir/prometheus.yml" <<CONF
global:
  scrape_interval: ${LC_PROM_SCRAPE_INTERVAL:-2s}
  evaluation_interval: ${LC_PROM_SCRAPE_INTERVAL:-2s}
rule_files:
  - $prom_dir/rules/*.yml
alerting:
  alertmanagers:
    - static_configs:
        - targets: ["127.0.0.1:$LC_AM_PORT"]
scrape_configs:
  - job_name: prometheus
    static_configs:
      - targets: ["127.0.0.1:$LC_PROM_PORT"]
  # The job name the ServiceMonitor gives API pods (config/prometheus/api-servicemonitor.yaml).
  - job_name: listacompra-api
    file_sd_configs:
      - files: ["$prom_dir/targets/*.json"]
        refresh_interval: 2s
CONF
  if pid_alive "$prom_dir/prometheus.pid"; then
    curl -fsS -X POST "http://127.0.0.1:$LC_PROM_PORT/-/reload" >/dev/null \
      || die "prometheus on 127.0.0.1:$LC_PROM_PORT did not reload its configuration (log: $prom_dir/prometheus.log)."
    log "prometheus already running on 127.0.0.1:$LC_PROM_PORT (configuration reloaded)"
  else
    require_port_free prometheus "$LC_PROM_PORT" LC_PROM_PORT
    promtool check config "$prom_dir/prometheus.yml" >/dev/null \
      || die "generated $prom_dir/prometheus.yml is invalid (promtool check config). Fix: report a bug."
    log "starting prometheus on 127.0.0.1:$LC_PROM_PORT"
    setsid nohup prometheus --config.file="$prom_dir/prometheus.yml" --storage.tsdb.path="$prom_dir/data" \
      --storage.tsdb.retention.time=1d --web.listen-address="127.0.0.1:$LC_PROM_PORT" --web.enable-lifecycle \
      >"$prom_dir/prometheus.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$prom_dir/prometheus.pid"
    wait_for prometheus 30 curl -fsS "http://127.0.0.1:$LC_PROM_PORT/-/ready" \
      || { tail -n5 "$prom_dir/prometheus.log" >&2; die "prometheus did not become ready within 30 s (log: $prom_dir/prometheus.log)."; }
  fi
  env_set PROMETHEUS_URL "http://127.0.0.1:$LC_PROM_PORT"
  env_set LC_PROMETHEUS_TARGETS_DIR "$prom_dir/targets"
  env_set LC_PROMETHEUS_RULES_DIR "$prom_dir/rules"
}
prometheus_down() {
  stop_pid prometheus "$prom_dir/prometheus.pid"
  env_unset PROMETHEUS_URL LC_PROMETHEUS_TARGETS_DIR LC_PROMETHEUS_RULES_DIR
}

# --- Jaeger -----------------------------------------------------------------------------
jaeger_dir="$LC_STATE/jaeger"
jaeger_up() {
  local bin; bin=$(bash "$LC_REPO/e2e/scripts/build-jaeger.sh")
  mkdir -p "$jaeger_dir"
  # The all-in-one pipeline (OTLP in, memory storage, query API and UI), on loopback ports.
  cat > "$jaeger_dir/config.yaml" <<CONF
service:
  extensions: [jaeger_storage, jaeger_query, healthcheckv2]
  pipelines:
    traces:
      receivers: [otlp]
      processors: [batch]
      exporters: [jaeger_storage_exporter]
  telemetry:
    resource:
      service.name: jaeger
    metrics:
      level: none
    logs:
      level: info
extensions:
  healthcheckv2:
    use_v2: true
    http:
      endpoint: 127.0.0.1:$LC_JAEGER_HEALTH_PORT
  jaeger_query:
    storage:
      traces: memory
    http:
      endpoint: 127.0.0.1:$LC_JAEGER_QUERY_PORT
    grpc:
      endpoint: 127.0.0.1:$LC_JAEGER_QUERY_GRPC_PORT
  jaeger_storage:
    backends:
      memory:
        memory:
          max_traces: 20000
receivers:
  otlp:
    protocols:
      grpc:
        endpoint: 127.0.0.1:$LC_JAEGER_OTLP_GRPC_PORT
      http:
        endpoint: 127.0.0.1:$LC_JAEGER_OTLP_HTTP_PORT
processors:
  batch:
    timeout: 200ms
exporters:
  jaeger_storage_exporter:
    trace_storage: memory
CONF
  # (A running Jaeger keeps the configuration it started with: `down jaeger` first to change it.)
  if pid_alive "$jaeger_dir/jaeger.pid"; then log "jaeger already running (query on 127.0.0.1:$LC_JAEGER_QUERY_PORT)"; else
    require_port_free jaeger "$LC_JAEGER_OTLP_HTTP_PORT" LC_JAEGER_OTLP_HTTP_PORT
    require_port_free jaeger "$LC_JAEGER_OTLP_GRPC_PORT" LC_JAEGER_OTLP_GRPC_PORT
    require_port_free jaeger "$LC_JAEGER_QUERY_PORT" LC_JAEGER_QUERY_PORT
    require_port_free jaeger "$LC_JAEGER_QUERY_GRPC_PORT" LC_JAEGER_QUERY_GRPC_PORT
    require_port_free jaeger "$LC_JAEGER_HEALTH_PORT" LC_JAEGER_HEALTH_PORT
    log "starting jaeger (OTLP on 127.0.0.1:$LC_JAEGER_OTLP_HTTP_PORT, query on 127.0.0.1:$LC_JAEGER_QUERY_PORT)"
    setsid nohup "$bin" --config "$jaeger_dir/config.yaml" \
      >"$jaeger_dir/jaeger.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$jaeger_dir/jaeger.pid"
    wait_for jaeger 60 curl -fsS "http://127.0.0.1:$LC_JAEGER_HEALTH_PORT/status" \
      || { tail -n5 "$jaeger_dir/jaeger.log" >&2; die "jaeger did not become ready within 60 s (log: $jaeger_dir/jaeger.log)."; }
  fi
  env_set LC_OTLP_ENDPOINT "http://127.0.0.1:$LC_JAEGER_OTLP_HTTP_PORT"
  env_set LC_JAEGER_QUERY_URL "http://127.0.0.1:$LC_JAEGER_QUERY_PORT"
}
jaeger_down() {
  stop_pid jaeger "$jaeger_dir/jaeger.pid"
  env_unset LC_OTLP_ENDPOINT LC_JAEGER_QUERY_URL
}

# --- S3 (s3s-fs) ------------------------------------------------------------------------
s3_dir="$LC_STATE/s3"
s3_up() {
  local bin; bin=$(bash "$LC_REPO/e2e/scripts/build-s3s-fs.sh")
  # A bucket is a folder of the server's root.
  mkdir -p "$s3_dir/data/$LC_S3_BUCKET"
  if pid_alive "$s3_dir/s3.pid"; then log "s3 already running on 127.0.0.1:$LC_S3_PORT"; else
    require_port_free s3 "$LC_S3_PORT" LC_S3_PORT
    log "starting s3 (s3s-fs) on 127.0.0.1:$LC_S3_PORT, bucket $LC_S3_BUCKET"
    RUST_LOG=${LC_S3_LOG:-warn} setsid nohup "$bin" --host 127.0.0.1 --port "$LC_S3_PORT" \
      --access-key "$LC_S3_ACCESS_KEY" --secret-key "$LC_S3_SECRET_KEY" "$s3_dir/data" \
      >"$s3_dir/s3.log" 2>&1 < /dev/null 9>&- &
    echo $! > "$s3_dir/s3.pid"
    # Any HTTP answer (an unsigned request gets 403) means it listens.
    wait_for s3 30 curl -sS -o /dev/null "http://127.0.0.1:$LC_S3_PORT/" \
      || { tail -n5 "$s3_dir/s3.log" >&2; die "s3 did not start within 30 s (log: $s3_dir/s3.log)."; }
  fi
  # The API's own variables (see api-server/src/config.rs), and the binary for tests that
  # run a private server they can stop.
  env_set S3_ENDPOINT "http://127.0.0.1:$LC_S3_PORT"
  env_set S3_BUCKET "$LC_S3_BUCKET"
  env_set S3_REGION us-east-1
  env_set S3_FORCE_PATH_STYLE true
  env_set S3_ACCESS_KEY_ID "$LC_S3_ACCESS_KEY"
  env_set S3_SECRET_ACCESS_KEY "$LC_S3_SECRET_KEY"
  env_set LC_S3S_FS_BIN "$bin"
}
s3_down() {
  stop_pid s3 "$s3_dir/s3.pid"
  env_unset S3_ENDPOINT S3_BUCKET S3_REGION S3_FORCE_PATH_STYLE S3_ACCESS_KEY_ID S3_SECRET_ACCESS_KEY LC_S3S_FS_BIN
}

# --- dispatch ---------------------------------------------------------------------------
status() {
  printf '%-11s %s\n' postgres "$( [ -d "$pg_dir/data" ] && postgres_running && echo "up 127.0.0.1:$LC_PG_PORT" || echo down)"
  printf '%-11s %s\n' redis "$(pid_alive "$redis_dir/redis.pid" && echo "up 127.0.0.1:$LC_REDIS_PORT (TLS $LC_REDIS_TLS_PORT)" || echo down)"
  printf '%-11s %s\n' rabbitmq "$(pid_alive "$rabbit_dir/rabbitmq.pid" && echo "up 127.0.0.1:$LC_AMQP_PORT (TLS $LC_AMQP_TLS_PORT)" || echo down)"
  printf '%-11s %s\n' alertmanager "$(pid_alive "$am_dir/alertmanager.pid" && echo "up 127.0.0.1:$LC_AM_PORT" || echo down)"
  printf '%-11s %s\n' prometheus "$(pid_alive "$prom_dir/prometheus.pid" && echo "up 127.0.0.1:$LC_PROM_PORT" || echo down)"
  printf '%-11s %s\n' s3 "$(pid_alive "$s3_dir/s3.pid" && echo "up 127.0.0.1:$LC_S3_PORT (bucket $LC_S3_BUCKET)" || echo down)"
  printf '%-11s %s\n' jaeger "$(pid_alive "$jaeger_dir/jaeger.pid" && echo "up 127.0.0.1:$LC_JAEGER_QUERY_PORT (OTLP $LC_JAEGER_OTLP_HTTP_PORT)" || echo down)"
}

cmd=${1:-status}; shift || true
if [ "$cmd" = rabbitmqctl ]; then rabbit_ctl "$@"; exit; fi
names=("$@")
if (( ! ${#names[@]} )); then
  names=("${ALL[@]}")
  [ "$cmd" = down ] && names+=("${OPTIONAL[@]}")
fi
for n in "${names[@]}"; do
  case " ${ALL[*]} ${OPTIONAL[*]} " in *" $n "*) ;; *) die "unknown service '$n'. Fix: use one of: ${ALL[*]} ${OPTIONAL[*]}." ;; esac
done
mkdir -p "$LC_STATE"
case "$cmd" in
  up)     for n in "${names[@]}"; do with_lock "${n}_up"; done; echo "$LC_ENV_FILE" ;;
  down)   for n in "${names[@]}"; do "${n}_down"; done ;;
  status) status ;;
  *)      die "unknown command '$cmd'. Fix: use up, down or status." ;;
esac
