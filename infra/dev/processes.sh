# shellcheck shell=bash
# Chronicle's ./dev: supervising Chronicle's own processes: build, migrations, the
# development JWT key, starting/stopping the processes of target/debug, the summary of `up`.
# Sourced by ./dev after infra/dev/common.sh, not run on its own.

# The Chronicle processes, in start order. A process is started only when
# target/debug/<name> exists.
PROCESSES=(relay command-api projector)

# ---------------------------------------------------------------------------------------------
# Rust workspace: build, migrations, processes
# ---------------------------------------------------------------------------------------------
have_workspace() { [ -f "$ROOT/Cargo.toml" ]; }

build() {
  if [ "${SKIP_BUILD:-0}" = 1 ]; then
    say "build: skipped (SKIP_BUILD=1)"
    return 0
  fi
  if ! have_workspace; then
    say "build: no Cargo.toml yet, skipped"
    return 0
  fi
  say "build: cargo build --workspace --bins"
  (cd "$ROOT" && cargo build --workspace --bins)
}

migrate() {
  local bin="$ROOT/target/debug/migrate"
  if [ ! -x "$bin" ]; then
    say "migrations: skipped (target/debug/migrate does not exist yet)"
    return 0
  fi
  say "migrations: target/debug/migrate"
  "$bin" || die "migrations failed"
}

# The address a process listens on (host:port), for readiness and the summary.
process_addr() {
  case $1 in
    command-api) printf '%s' "$CHRONICLE_HTTP_ADDR" ;;
    relay) printf '%s' "$CHRONICLE_RELAY_METRICS_ADDR" ;;
    projector) printf '%s' "$CHRONICLE_PROJECTOR_METRICS_ADDR" ;;
    *) return 1 ;;
  esac
}

process_url() {
  case $1 in
    command-api) printf 'http://%s (metrics: http://%s/metrics)' "$CHRONICLE_HTTP_ADDR" "$CHRONICLE_API_METRICS_ADDR" ;;
    *) printf 'http://%s/metrics' "$(process_addr "$1")" ;;
  esac
}

# Development JWT signing keys: generated once into .chronicle/keys (never committed).
ensure_dev_keys() {
  local generator="$ROOT/target/debug/command-api"
  [ -x "$generator" ] || return 0
  compgen -G "$CHRONICLE_JWT_KEYS_DIR/*.key.pem" >/dev/null && return 0
  say "keys: generating a development JWT signing key in $(rel "$CHRONICLE_JWT_KEYS_DIR")"
  "$generator" generate-keys --dir "$CHRONICLE_JWT_KEYS_DIR" --kid "dev-$(date +%Y%m%d%H%M%S)" >/dev/null
}

processes_up() {
  local name bin addr deadline
  ensure_dev_keys
  for name in "${PROCESSES[@]}"; do
    bin="$ROOT/target/debug/$name"
    if [ ! -x "$bin" ]; then
      say "$name: not built (no target/debug/$name), not started"
      continue
    fi
    if pid_alive "$name"; then
      if [ "$bin" -nt "$(pid_file "$name")" ]; then
        say "$name: binary rebuilt since start: restarting"
        stop_bg "$name" >/dev/null
      else
        say "$name: already running at $(process_url "$name") (pid $(read_pid "$name"))"
        continue
      fi
    fi
    start_bg "$name" "$bin"
    addr="$(process_addr "$name" || true)"
    deadline=$((SECONDS + PROCESS_TIMEOUT))
    while :; do
      started_alive "$name" || fail_service "$name" "exited during start-up"
      if [ -z "$addr" ]; then
        sleep 2
        started_alive "$name" || fail_service "$name" "exited during start-up"
        break
      fi
      if port_open "$(host_of "$addr")" "$(port_of "$addr")"; then break; fi
      if ((SECONDS >= deadline)); then
        warn "$name is running but nothing answers on $addr after ${PROCESS_TIMEOUT}s"
        break
      fi
      sleep 1
    done
    say "$name: started at $(process_url "$name") (pid $(read_pid "$name"))"
  done
}

processes_down() {
  local i
  for ((i = ${#PROCESSES[@]} - 1; i >= 0; i--)); do
    if [ -f "$(pid_file "${PROCESSES[i]}")" ]; then
      stop_bg "${PROCESSES[i]}" 30
    else
      say "${PROCESSES[i]}: not running"
    fi
  done
}

summary() {
  local admin_user=${CHRONICLE_BOOTSTRAP_ADMIN%%:*} admin_pass=${CHRONICLE_BOOTSTRAP_ADMIN#*:} name
  cat <<EOF

Chronicle is up ($(infra_mode) infrastructure).
  PostgreSQL     app:       $DATABASE_URL
                 relay:     $CHRONICLE_RELAY_DATABASE_URL
                 projector: $CHRONICLE_PROJECTOR_DATABASE_URL
                 admin:     $DATABASE_ADMIN_URL
  Kafka          $KAFKA_BROKERS
  Elasticsearch  $ELASTICSEARCH_URL
EOF
  if [ "$(infra_mode)" = compose ]; then
    say "  Kibana         $KIBANA_URL"
  fi
  for name in "${PROCESSES[@]}"; do
    if pid_alive "$name"; then
      printf '  %-14s %s (pid %s)\n' "$name" "$(process_url "$name")" "$(read_pid "$name")"
    else
      printf '  %-14s not running (not built yet)\n' "$name"
    fi
  done
  cat <<EOF
  Bootstrap admin: username '$admin_user', password '$admin_pass' (CHRONICLE_BOOTSTRAP_ADMIN)
  Logs: $(rel "$LOG_DIR")/<name>.log   (./dev logs [name]); environment: eval "\$(./dev env)"
EOF
}
