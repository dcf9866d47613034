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

# The fuzz test's schemathesis (command-api/tests/fuzz.rs) in a virtual environment of its
# own, installed from infra/fuzz/requirements.txt when missing or when that file changed (a
# copy of it in the environment records what was installed).
FUZZ_VENV="$TOOLS_DIR/fuzz-venv"
FUZZ_REQUIREMENTS="$ROOT/infra/fuzz/requirements.txt"
ensure_schemathesis() {
  if [ -x "$FUZZ_VENV/bin/schemathesis" ] && cmp -s "$FUZZ_REQUIREMENTS" "$FUZZ_VENV/requirements.txt"; then
    return 0
  fi
  local python="" candidate
  for candidate in python3 python3.13 python3.12 python3.11; do
    if command -v "$candidate" >/dev/null 2>&1 &&
      "$candidate" -c 'import sys; sys.exit(sys.version_info < (3, 11))' 2>/dev/null; then
      python=$candidate
      break
    fi
  done
  [ -n "$python" ] || die "the fuzz test's schemathesis needs Python 3.11 or later (python3.11 on PATH will do)"
  # Debian splits venv and ensurepip out of the interpreter's package.
  "$python" -c 'import ensurepip, venv' >/dev/null 2>&1 || apt_install python3-venv
  say "test: installing schemathesis ($(rel "$FUZZ_REQUIREMENTS")) into $(rel "$FUZZ_VENV")"
  rm -rf "$FUZZ_VENV"
  { "$python" -m venv "$FUZZ_VENV" &&
    "$FUZZ_VENV/bin/pip" install --disable-pip-version-check --no-input -r "$FUZZ_REQUIREMENTS"; } \
    >>"$LOG_DIR/fuzz-install.log" 2>&1 ||
    { tail -n 30 "$LOG_DIR/fuzz-install.log" >&2; die "installing schemathesis failed (log: $(rel "$LOG_DIR/fuzz-install.log"))"; }
  cp "$FUZZ_REQUIREMENTS" "$FUZZ_VENV/requirements.txt"
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
  postgres_check_bootstrap_keeps_passwords
  # Tests that stop Kafka run a broker of their own from the native jars and JDK (fetched
  # under Docker Compose too: the cache makes that a no-op after the first time).
  kafka_install
  find_java
  export CHRONICLE_KAFKA_LIBS="$KAFKA_LIBS" CHRONICLE_JAVA="$JAVA_HOME_SEL/bin/java"
  ensure_schemathesis
  export CHRONICLE_SCHEMATHESIS="$FUZZ_VENV/bin/schemathesis"
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
BENCHES=(relay:e2e commands:e2e projector:e2e replay:e2e system:e2e)

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
  # The commands benchmark's baseline is the server's own pgbench.
  if pg_bin >/dev/null 2>&1 && [ -x "$(pg_bin)/pgbench" ]; then export CHRONICLE_PGBENCH="$(pg_bin)/pgbench"; fi
  mkdir -p "$CHRONICLE_BENCH_DIR"
  cd "$ROOT"
  for entry in "${BENCHES[@]}"; do
    name=${entry%%:*} crate=${entry#*:}
    [ "$wanted" = all ] || [ "$wanted" = "$name" ] || continue
    if [ "$name" = system ]; then
      # The whole system runs as ./dev up runs it: the three binaries, built in release.
      say "bench: cargo build --release (command-api, relay, projector)"
      cargo build --release -p command-api -p relay -p projector --bins
      export CHRONICLE_LAB_BIN_DIR="$ROOT/target/release"
    fi
    say "bench: $name (cargo bench -p $crate --bench $name)"
    rm -f "$CHRONICLE_BENCH_DIR/$name.json"
    cargo bench -p "$crate" --bench "$name"
    ran+=("$name")
  done
  python3 "$ROOT/infra/bench/report.py" "$CHRONICLE_BENCH_DIR" "${ran[@]}"
}

# ./dev chaos and ./dev soak run the e2e crate's `chaos` and `soak` binaries (e2e/src/lab):
# Chronicle's own processes started by the binary on a scratch database and prefixes of
# their own, beside whatever `./dev up` runs. Chaos stops and starts the shared
# infrastructure through `./dev _infra`.
lab_prepare() {
  infra_up
  build
  migrate
  postgres_drop_test_databases
  export CHRONICLE_DEV="$ROOT/dev" CHRONICLE_STATE="$STATE"
}

cmd_chaos() {
  have_workspace || die "no Cargo.toml: nothing to run"
  lab_prepare
  cd "$ROOT"
  export CHRONICLE_LAB_BIN_DIR="$ROOT/target/debug"
  say "chaos: two of each process (target/debug), faults one after another; logs in $(rel "$LOG_DIR")/chaos/"
  local rc=0
  "$ROOT/target/debug/chaos" "$@" || rc=$?
  if [ "$rc" -ne 0 ]; then
    # CI keeps only what is printed: the warnings of each process, so a failure can be
    # understood without the machine it ran on.
    local log
    for log in "$LOG_DIR"/chaos/*.log; do
      [ -f "$log" ] || continue
      say "chaos: last warnings of $(basename "$log" .log):"
      sed 's/\x1b\[[0-9;]*m//g' "$log" | grep -E ' (WARN|ERROR) ' | tail -n 40 || true
    done
  fi
  return "$rc"
}

cmd_soak() {
  have_workspace || die "no Cargo.toml: nothing to run"
  lab_prepare
  cd "$ROOT"
  # Memory and lag are judged on what would be deployed: the release build.
  say "soak: cargo build --release (command-api, relay, projector)"
  cargo build --release -p command-api -p relay -p projector --bins
  export CHRONICLE_LAB_BIN_DIR="$ROOT/target/release"
  "$ROOT/target/debug/soak" "$@"
}

# ./dev _infra <stop|start|restart> <kafka|elasticsearch|postgres>: what chaos does to the
# infrastructure. A PostgreSQL restart is an immediate shutdown (no checkpoint, clients cut
# off), then a start; Kafka and Elasticsearch stop as on SIGTERM.
cmd__infra() {
  local action=${1:-} service=${2:-}
  case $action in stop | start | restart) ;; *) die "usage: ./dev _infra <stop|start|restart> <kafka|elasticsearch|postgres>" ;; esac
  if [ "$(infra_mode)" = compose ]; then
    case $action in
      stop) compose kill "$service" ;;
      start) compose start "$service" ;;
      restart) compose kill "$service" && compose start "$service" ;;
    esac
    return
  fi
  case $service:$action in
    kafka:stop) kafka_down ;;
    kafka:start) kafka_up ;;
    kafka:restart) kafka_down && kafka_up ;;
    elasticsearch:stop) elasticsearch_down ;;
    elasticsearch:start) elasticsearch_up ;;
    elasticsearch:restart) elasticsearch_down && elasticsearch_up ;;
    postgres:stop) pg_as "$(pg_bin)/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 60 -s ;;
    postgres:start) postgres_up ;;
    postgres:restart)
      pg_as "$(pg_bin)/pg_ctl" stop -D "$PG_DATA" -m immediate -w -t 60 -s
      postgres_up
      ;;
    *) die "unknown service '$service' (kafka, elasticsearch, postgres)" ;;
  esac
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
  # The tests that run a Kafka broker of their own (as `./dev test` sets them), once the Kafka
  # jars are here: Java was found to run them then, so this installs nothing.
  if [ -d "$KAFKA_LIBS" ] && find_java; then
    printf 'export CHRONICLE_KAFKA_LIBS=%q CHRONICLE_JAVA=%q\n' "$KAFKA_LIBS" "$JAVA_HOME_SEL/bin/java"
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
