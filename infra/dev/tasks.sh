# shellcheck shell=bash
# Chronicle's ./dev: the subcommands (cmd_<name>, called by main in ./dev) and what only
# they use.
# Sourced by ./dev after infra/dev/common.sh, infra.sh and processes.sh, not run on its own.
# shellcheck disable=SC2164 # ./dev runs under set -e: a failed cd stops it

ensure_sqlx_cli() {
  if [ -x "$TOOLS_DIR/bin/cargo-sqlx" ]; then return 0; fi
  say "lint: installing sqlx-cli $SQLX_CLI_VERSION into $(rel "$TOOLS_DIR") (once)"
  cargo install "sqlx-cli@$SQLX_CLI_VERSION" --locked --no-default-features --features postgres \
    --root "$TOOLS_DIR" >>"$LOG_DIR/sqlx-cli-install.log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/sqlx-cli-install.log" >&2; die "cargo install sqlx-cli failed"; }
}

# ---------------------------------------------------------------------------------------------
# Subcommands
# ---------------------------------------------------------------------------------------------
cmd_up() {
  local start=$SECONDS
  infra_up
  build
  migrate
  processes_up
  summary
  say "(up took $((SECONDS - start))s)"
}

cmd_down() {
  ensure_dirs
  processes_down
  infra_down
}

# status_line <name> <up|down> <address> [pid]
status_line() { printf '%-14s %-5s %-58s %s\n' "$1" "$2" "$3" "${4:+pid $4}"; }

cmd_status() {
  local name pid
  if [ "$(infra_mode)" = compose ]; then
    for name in postgres kafka elasticsearch kibana; do
      if [ -n "$(compose ps -q --status running "$name" 2>/dev/null)" ]; then
        status_line "$name" up "(compose) $(compose port "$name" "$(compose_port "$name")" 2>/dev/null || true)"
      else
        status_line "$name" down "(compose)"
      fi
    done
  else
    if pg_bin >/dev/null && postgres_running; then
      status_line postgres up "127.0.0.1:$PG_PORT (socket $(rel "$PG_RUN"))" "$(postgres_pid)"
    elif port_open 127.0.0.1 "$PG_PORT"; then
      status_line postgres up "127.0.0.1:$PG_PORT (not started by this checkout)"
    else
      status_line postgres down "127.0.0.1:$PG_PORT"
    fi
    local addr port
    for name in kafka elasticsearch; do
      if [ "$name" = kafka ]; then addr=$KAFKA_BROKERS port=9092; else addr=$ELASTICSEARCH_URL port=9200; fi
      if pid_alive "$name"; then
        status_line "$name" up "$addr" "$(read_pid "$name")"
      elif port_open 127.0.0.1 "$port"; then
        status_line "$name" up "$addr (not started by this checkout)"
      else
        status_line "$name" down "$addr"
      fi
    done
  fi
  for name in "${PROCESSES[@]}"; do
    if pid_alive "$name"; then
      pid="$(read_pid "$name")"
      status_line "$name" up "$(process_url "$name")" "$pid"
    elif [ -x "$ROOT/target/debug/$name" ]; then
      status_line "$name" down "$(process_url "$name")"
    else
      status_line "$name" down "$(process_url "$name") (not built)"
    fi
  done
}

compose_port() {
  case $1 in
    postgres) echo 5432 ;; kafka) echo 9092 ;; elasticsearch) echo 9200 ;; kibana) echo 5601 ;;
  esac
}

cmd_logs() {
  local name=${1:-} log f
  if [ -z "$name" ]; then
    shopt -s nullglob
    local logs=("$LOG_DIR"/*.log)
    if [ ${#logs[@]} -eq 0 ]; then
      say "no logs yet in $(rel "$LOG_DIR")"
      return 0
    fi
    say "logs in $(rel "$LOG_DIR") (./dev logs <name> to follow one):"
    for f in "${logs[@]}"; do
      printf '\n==> %s (%s) <==\n' "$(basename "$f" .log)" "$(rel "$f")"
      tail -n 10 "$f"
    done
    if [ "$(infra_mode)" = compose ]; then
      say ""
      say "compose services: ./dev logs postgres|kafka|elasticsearch|kibana"
    fi
    return 0
  fi
  if [ "$(infra_mode)" = compose ] && [[ " postgres kafka elasticsearch kibana " == *" $name "* ]]; then
    if [ -t 0 ]; then compose logs --tail 200 -f "$name"; else compose logs --tail 200 "$name"; fi
    return
  fi
  log="$LOG_DIR/$name.log"
  if [ ! -f "$log" ]; then
    local have=()
    for f in "$LOG_DIR"/*.log; do [ -f "$f" ] && have+=("$(basename "$f" .log)"); done
    die "no log named '$name' (have: ${have[*]:-none})"
  fi
  if [ -t 0 ]; then
    exec tail -n 200 -F "$log"
  else
    tail -n 200 "$log"
  fi
}

cmd_test() {
  have_workspace || die "no Cargo.toml: nothing to test"
  infra_up
  build
  migrate
  postgres_drop_test_databases
  # Tests that stop Kafka run a broker of their own from the native jars and JDK (fetched
  # under Docker Compose too: the cache makes that a no-op after the first time).
  kafka_install
  find_java
  export CHRONICLE_KAFKA_LIBS="$KAFKA_LIBS" CHRONICLE_JAVA="$JAVA_HOME_SEL/bin/java"
  local args=(--workspace --lib --bins --tests) a
  for a in "$@"; do
    case $a in
      -p | --package | --package=* | -p?*) args=(--lib --bins --tests) ;; # -p and --workspace don't mix
      --) break ;;
    esac
  done
  say "test: cargo test ${args[*]} $*"
  cd "$ROOT"
  exec cargo test "${args[@]}" "$@"
}

# Benchmarks are cargo benches (release profile, harness = false) of the crate they measure.
# Benchmarks are cargo benches (release profile, harness = false) of the e2e crate, each
# against a raw baseline in the same run. Each writes .chronicle/bench/<name>.json; the
# summary (table, Markdown report, latency plot) is made from those by infra/bench/report.py.
BENCHES=(relay:e2e commands:e2e projector:e2e replay:e2e)

cmd_bench() {
  have_workspace || die "no Cargo.toml: nothing to benchmark"
  local wanted=${1:-all} entry name crate ran=()
  local known=" ${BENCHES[*]%%:*} "
  [ "$wanted" = all ] || [[ $known == *" $wanted "* ]] || die "unknown benchmark '$wanted' (known:${known% })"
  infra_up
  build
  migrate
  postgres_drop_test_databases
  need_cmd python3 python3
  export CHRONICLE_BENCH_DIR="$STATE/bench"
  mkdir -p "$CHRONICLE_BENCH_DIR"
  cd "$ROOT"
  for entry in "${BENCHES[@]}"; do
    name=${entry%%:*} crate=${entry#*:}
    [ "$wanted" = all ] || [ "$wanted" = "$name" ] || continue
    say "bench: $name (cargo bench -p $crate --bench $name)"
    rm -f "$CHRONICLE_BENCH_DIR/$name.json"
    cargo bench -p "$crate" --bench "$name"
    ran+=("$name")
  done
  python3 "$ROOT/infra/bench/report.py" "$CHRONICLE_BENCH_DIR" "${ran[@]}"
}

cmd_lint() {
  have_workspace || die "no Cargo.toml: nothing to lint"
  local failed=()
  cd "$ROOT"
  say "lint: cargo fmt --all -- --check"
  cargo fmt --all -- --check || failed+=(fmt)
  say "lint: cargo clippy --workspace --all-targets -- -D warnings"
  cargo clippy --workspace --all-targets -- -D warnings || failed+=(clippy)
  if [ -d "$ROOT/.sqlx" ]; then
    ensure_dirs
    ensure_sqlx_cli
    infra_up
    build
    migrate
    say "lint: cargo sqlx prepare --workspace --check"
    DATABASE_URL="$DATABASE_ADMIN_URL" cargo sqlx prepare --workspace --check || failed+=(sqlx-prepare)
  else
    say "lint: no .sqlx/ directory: sqlx prepare check skipped"
  fi
  if [ ${#failed[@]} -gt 0 ]; then
    printf 'dev: lint failed: %s\n' "${failed[*]}" >&2
    return 1
  fi
  say "lint: ok"
}

cmd_env() {
  local v
  for v in "${ENV_VARS[@]}"; do
    printf 'export %s=%q\n' "$v" "${!v}"
  done
  if [ "$(infra_mode)" = compose ]; then
    printf 'export KIBANA_URL=%q\n' "$KIBANA_URL"
  fi
}

# Kibana runs only under Docker Compose (infra/docker-compose.yml, service `kibana`): there is no
# native Kibana, so natively this needs KIBANA_URL pointing at a Kibana elsewhere.
KIBANA_SAVED_OBJECTS="$ROOT/infra/kibana/saved_objects.ndjson"

# The projector's operator commands (replay, verify, dlq) against the running system, with the
# environment `up` used; builds the binary first unless SKIP_BUILD=1.
cmd_projector() {
  have_workspace || die "no Cargo.toml: nothing to run"
  [ $# -gt 0 ] || die "usage: ./dev projector <replay|verify|dlq> ... (./dev projector --help)"
  if [ "${SKIP_BUILD:-0}" != 1 ]; then
    (cd "$ROOT" && cargo build --quiet -p projector --bin projector) || die "build failed"
  fi
  exec "$ROOT/target/debug/projector" "$@"
}

# The demo talks HTTP to the running API only; it starts nothing.
cmd_demo() {
  port_open "$(host_of "$CHRONICLE_HTTP_ADDR")" "$(port_of "$CHRONICLE_HTTP_ADDR")" ||
    die "the command API does not answer on $CHRONICLE_HTTP_ADDR: run ./dev up first"
  need_cmd python3
  exec python3 "$ROOT/infra/demo/demo.py" "$@"
}

cmd_kibana_import() {
  local file=$KIBANA_SAVED_OBJECTS url="${KIBANA_URL%/}/api/saved_objects/_import?overwrite=true"
  local response status body
  [ -f "$file" ] || die "missing $(rel "$file")"
  need_cmd curl curl
  say "kibana-import: $(rel "$file") -> $url"
  # -F sends the file as multipart field `file` with its name; Kibana wants a *.ndjson name.
  if ! response="$(curl -sS --connect-timeout 10 --max-time 120 -X POST "$url" -H 'kbn-xsrf: true' \
    -F "file=@$file" -w '\n%{http_code}' 2>&1)"; then
    response=${response%$'\n'*} # drop the status line (000)
    die "Kibana is unreachable at $KIBANA_URL: ${response%$'\n'}
Kibana runs only under Docker Compose here (infrastructure: $(infra_mode)): start it with
./dev up on a machine where 'docker info' works (CHRONICLE_INFRA=compose), or set KIBANA_URL."
  fi
  status=${response##*$'\n'}
  body=${response%$'\n'*}
  if [ "$status" != 200 ]; then
    die "Kibana answered HTTP $status to the import (Kibana runs only under Docker Compose here; is $KIBANA_URL Kibana, and ready?):
$body"
  fi
  if ! grep -q '"success":true' <<<"$body"; then
    if command -v jq >/dev/null 2>&1; then body="$(jq . <<<"$body" 2>/dev/null || printf '%s' "$body")"; fi
    die "Kibana refused part of the import (success is not true):
$body"
  fi
  if command -v jq >/dev/null 2>&1; then
    jq -r '"imported \(.successCount) saved objects:",
      (.successResults[] | "  \(.type)\t\(.id)\t\(.meta.title // "")"),
      (.warnings[]? | "  warning: \(.message // tostring)")' <<<"$body"
  else
    say "imported: $body"
  fi
  say "open ${KIBANA_URL%/}/app/dashboards#/view/chronicle-activity-dashboard"
}
