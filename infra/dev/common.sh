# shellcheck shell=bash
# Chronicle's ./dev: paths and the state layout under .chronicle/, versions, the environment
# defaults, the small helpers (messages, root and apt, ports, pid files, starting and stopping
# background processes), the infrastructure mode (Docker Compose or native), Java and Maven.
# Sourced by ./dev (after `set -euo pipefail` and ROOT), not run on its own; its variables are
# used by the other pieces in infra/dev/.
# shellcheck disable=SC2034 # many of its variables are used only by the other pieces

STATE="$ROOT/.chronicle"
LOG_DIR="$STATE/logs"
RUN_DIR="$STATE/run"
M2_REPO="$STATE/m2"
TOOLS_DIR="$STATE/tools"
COMPOSE_FILE="$ROOT/infra/docker-compose.yml"

# Versions of the native infrastructure. Kafka's version is the one in infra/kafka/pom.xml.
ES_VERSION=8.19.21
MAVEN_DEPENDENCY_PLUGIN=org.apache.maven.plugins:maven-dependency-plugin:3.8.1
SQLX_CLI_VERSION=0.9.0

# Native infrastructure layout.
PG_DIR="$STATE/postgres"
PG_DATA="$PG_DIR/data"
PG_RUN="$PG_DIR/run"
PG_PORT=5432
KAFKA_DIR="$STATE/kafka"
KAFKA_LIBS="$KAFKA_DIR/libs"
KAFKA_DATA="$KAFKA_DIR/data"
KAFKA_PROPS="$KAFKA_DIR/server.properties"
ES_DIR="$STATE/elasticsearch"
ES_HOME="$ES_DIR/dist/elasticsearch-$ES_VERSION"
ES_CONF="$ES_DIR/config"
ES_USER=chronicle # Elasticsearch refuses to run as root: as root we run it as this system user

# Start-up timeouts (seconds).
PG_TIMEOUT=60
KAFKA_TIMEOUT=120
ES_TIMEOUT=180
PROCESS_TIMEOUT=30

# ---------------------------------------------------------------------------------------------
# Environment: defaults for everything `up` starts and for the tests. A variable that is
# already set wins.
# ---------------------------------------------------------------------------------------------
: "${DATABASE_URL:=postgres://chronicle_app:chronicle_app@127.0.0.1:5432/chronicle}"
: "${CHRONICLE_RELAY_DATABASE_URL:=postgres://chronicle_relay:chronicle_relay@127.0.0.1:5432/chronicle}"
: "${CHRONICLE_PROJECTOR_DATABASE_URL:=postgres://chronicle_projector:chronicle_projector@127.0.0.1:5432/chronicle}"
# The passwords above (each role's own name) and the bootstrap admin's are development
# ones: the binaries refuse them unless this says so.
: "${CHRONICLE_DEV_MODE:=true}"
# Self-service sign-up (POST /v1/signup) is open in development; closed by default elsewhere.
: "${CHRONICLE_SIGNUP:=open}"
: "${DATABASE_ADMIN_URL:=postgres://chronicle_owner:chronicle_owner@127.0.0.1:5432/chronicle}"
: "${KAFKA_BROKERS:=127.0.0.1:9092}"
: "${ELASTICSEARCH_URL:=http://127.0.0.1:9200}"
: "${CHRONICLE_HTTP_ADDR:=127.0.0.1:8080}"
: "${CHRONICLE_RELAY_METRICS_ADDR:=127.0.0.1:9464}"
: "${CHRONICLE_PROJECTOR_METRICS_ADDR:=127.0.0.1:9465}"
: "${CHRONICLE_API_METRICS_ADDR:=127.0.0.1:9466}"
: "${CHRONICLE_BOOTSTRAP_ADMIN:=platform-admin:dev-admin-password}"
: "${CHRONICLE_JWT_KEYS_DIR:=$STATE/keys/jwt}"
: "${RUST_LOG:=info}"
: "${KIBANA_URL:=http://127.0.0.1:5601}"
: "${KAFKA_HEAP_OPTS:=-Xms256m -Xmx512m}"
: "${ES_JAVA_OPTS:=-Xms512m -Xmx1g}"
ENV_VARS=(DATABASE_URL DATABASE_ADMIN_URL KAFKA_BROKERS ELASTICSEARCH_URL CHRONICLE_HTTP_ADDR
  CHRONICLE_RELAY_METRICS_ADDR CHRONICLE_PROJECTOR_METRICS_ADDR CHRONICLE_API_METRICS_ADDR
  CHRONICLE_BOOTSTRAP_ADMIN
  CHRONICLE_JWT_KEYS_DIR RUST_LOG CHRONICLE_RELAY_DATABASE_URL CHRONICLE_PROJECTOR_DATABASE_URL
  CHRONICLE_DEV_MODE CHRONICLE_SIGNUP)
export "${ENV_VARS[@]}"

# cargo may not be on PATH in a non-login shell.
if ! command -v cargo >/dev/null 2>&1 && [ -x "${HOME:-/root}/.cargo/bin/cargo" ]; then
  PATH="${HOME:-/root}/.cargo/bin:$PATH"
fi
export PATH="$TOOLS_DIR/bin:$PATH"

# ---------------------------------------------------------------------------------------------
# Small helpers
# ---------------------------------------------------------------------------------------------
say() { printf '%s\n' "$*"; }
warn() { printf 'dev: warning: %s\n' "$*" >&2; }
die() {
  printf 'dev: error: %s\n' "$*" >&2
  exit 1
}
is_root() { [ "$(id -u)" -eq 0 ]; }

# Run a command as root (directly, or through sudo when we are not root).
as_root() {
  if is_root; then
    "$@"
  elif command -v sudo >/dev/null 2>&1; then
    sudo "$@"
  else
    die "need root for: $*"
  fi
}

# apt_install <package>...: install Debian packages (non-interactively, once per run updating
# the package lists).
APT_UPDATED=0
apt_install() {
  command -v apt-get >/dev/null 2>&1 || die "missing $*, and no apt-get to install it with"
  mkdir -p "$LOG_DIR"
  say "installing Debian packages: $* (log: .chronicle/logs/apt.log)"
  if [ "$APT_UPDATED" = 0 ]; then
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update >>"$LOG_DIR/apt.log" 2>&1 ||
      { tail -n 20 "$LOG_DIR/apt.log" >&2; die "apt-get update failed"; }
    APT_UPDATED=1
  fi
  as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y --no-install-recommends "$@" \
    >>"$LOG_DIR/apt.log" 2>&1 || { tail -n 20 "$LOG_DIR/apt.log" >&2; die "apt-get install $* failed"; }
}

# need_cmd <command> <debian package>: make sure a command exists, installing its package.
need_cmd() {
  command -v "$1" >/dev/null 2>&1 || apt_install "$2"
}

# port_open <host> <port>: does something accept TCP connections there?
port_open() {
  # shellcheck disable=SC2016 # expanded by the inner bash
  timeout 2 bash -c 'exec 3<>"/dev/tcp/$0/$1"' "$1" "$2" 2>/dev/null
}

# host_of / port_of "host:port"
host_of() { printf '%s' "${1%:*}"; }
port_of() { printf '%s' "${1##*:}"; }

# rel <path>: the path relative to the repository root, for messages.
rel() { printf '%s' "${1#"$ROOT"/}"; }

pid_file() { printf '%s/%s.pid' "$RUN_DIR" "$1"; }

# read_pid <name>: print the recorded pid (fails when there is none).
read_pid() {
  local f
  f="$(pid_file "$1")"
  [ -s "$f" ] && tr -dc '0-9' <"$f"
}

# pid_alive <name>: is the process recorded for <name> alive, and is it one of ours (its
# command line mentions this checkout, so a recycled pid is not mistaken for it)?
pid_alive() {
  local pid
  pid="$(read_pid "$1")" || return 1
  [ -n "$pid" ] && kill -0 "$pid" 2>/dev/null || return 1
  if [ -r "/proc/$pid/cmdline" ]; then
    tr '\0' ' ' <"/proc/$pid/cmdline" | grep -qF "$ROOT"
  fi
}

# pid_running <pid>: is that process alive (and not a zombie)?
pid_running() {
  kill -0 "$1" 2>/dev/null || return 1
  [ -r "/proc/$1/stat" ] || return 0
  [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# started_alive <name>: during start-up, is the process we just started still there? (Its
# command line may not show this checkout yet, so pid_alive would not do.)
started_alive() {
  local pid
  pid="$(read_pid "$1")" && [ -n "$pid" ] && pid_running "$pid"
}

# start_bg <name> <command>...: start a command in the background in its own session (so it
# survives this shell and can be stopped as a process group), stdin from /dev/null, output
# appended to .chronicle/logs/<name>.log, pid in .chronicle/run/<name>.pid.
start_bg() {
  local name=$1 log
  shift
  log="$LOG_DIR/$name.log"
  printf '\n===== %s: ./dev starting %s =====\n' "$(date '+%Y-%m-%dT%H:%M:%S%z')" "$name" >>"$log"
  nohup setsid "$@" >>"$log" 2>&1 </dev/null &
  echo "$!" >"$(pid_file "$name")"
}

# stop_bg <name> [timeout]: stop what was recorded for <name>: SIGTERM to the process itself
# (Elasticsearch's launcher then shuts its server down cleanly), then to its whole process
# group if something of it is left, SIGKILL after the timeout; remove the pid file.
stop_bg() {
  local name=$1 timeout=${2:-30} pid deadline
  if ! pid_alive "$name"; then
    rm -f "$(pid_file "$name")"
    say "$name: not running"
    return 0
  fi
  pid="$(read_pid "$name")"
  kill -TERM "$pid" 2>/dev/null || true
  deadline=$((SECONDS + timeout))
  while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
  if kill -0 -- "-$pid" 2>/dev/null; then # the process or others of its group are still there
    kill -TERM -- "-$pid" 2>/dev/null || true
    deadline=$((SECONDS + 10))
    while kill -0 -- "-$pid" 2>/dev/null && ((SECONDS < deadline)); do sleep 0.5; done
    if kill -0 -- "-$pid" 2>/dev/null; then
      warn "$name did not stop: killing it"
      kill -KILL -- "-$pid" 2>/dev/null || true
      sleep 1
    fi
  fi
  rm -f "$(pid_file "$name")"
  say "$name: stopped (pid $pid)"
}

# fail_service <name> <reason>: make `up` fail loudly, with the end of the service's log.
fail_service() {
  local name=$1 why=$2 log="$LOG_DIR/$1.log"
  printf '\ndev: error: %s %s\n' "$name" "$why" >&2
  if [ -f "$log" ]; then
    printf -- '----- last 40 lines of %s -----\n' "$(rel "$log")" >&2
    tail -n 40 "$log" >&2
    printf -- '-----\n' >&2
  fi
  exit 1
}

# wait_ready <name> <timeout> <command>...: poll <command> every second until it succeeds;
# fail if the process recorded for <name> dies or the timeout passes.
wait_ready() {
  local name=$1 timeout=$2 deadline
  shift 2
  deadline=$((SECONDS + timeout))
  until "$@"; do
    started_alive "$name" || fail_service "$name" "exited during start-up"
    ((SECONDS < deadline)) || fail_service "$name" "was not ready within ${timeout}s"
    sleep 1
  done
}

ensure_dirs() {
  mkdir -p "$LOG_DIR" "$RUN_DIR" "$M2_REPO"
  # Other system users (postgres, chronicle) must be able to traverse into .chronicle.
  chmod a+rx "$STATE" "$LOG_DIR"
}

# ensure_traversable <user> <dir>: let <user> reach <dir> by adding search (x) permission for
# "others" on every ancestor that lacks it. Only needed when we run services as other users.
ensure_traversable() {
  local user=$1 dir=$2
  runuser -u "$user" -- test -x "$dir" 2>/dev/null && return 0
  local d=$dir
  while [ "$d" != / ]; do
    if ! runuser -u "$user" -- test -x "$d" 2>/dev/null && [ -d "$d" ]; then
      chmod o+x "$d"
    fi
    d="$(dirname "$d")"
  done
  runuser -u "$user" -- test -x "$dir" || die "user $user cannot reach $dir"
}

# ---------------------------------------------------------------------------------------------
# Infrastructure mode: Docker Compose or native
# ---------------------------------------------------------------------------------------------
# detect_infra_mode sets INFRA_MODE once per run (main calls it outside any subshell, so the
# possibly slow `docker info` runs at most once); infra_mode prints it.
INFRA_MODE=""
infra_mode() {
  detect_infra_mode
  printf '%s' "$INFRA_MODE"
}
detect_infra_mode() {
  if [ -z "$INFRA_MODE" ]; then
    if [ -n "${CHRONICLE_INFRA:-}" ]; then
      INFRA_MODE=$CHRONICLE_INFRA
    elif [ -s "$RUN_DIR/infra.mode" ]; then
      INFRA_MODE="$(cat "$RUN_DIR/infra.mode")" # what the last `up` used
    elif command -v docker >/dev/null 2>&1 && timeout 20 docker info >/dev/null 2>&1; then
      INFRA_MODE=compose
    else
      INFRA_MODE=native
    fi
    case $INFRA_MODE in
      native | compose) ;;
      *) die "CHRONICLE_INFRA must be native or compose, not '$INFRA_MODE'" ;;
    esac
  fi
}

compose() { docker compose -f "$COMPOSE_FILE" "$@"; }

# ---------------------------------------------------------------------------------------------
# Java and Maven (for Kafka and Elasticsearch)
# ---------------------------------------------------------------------------------------------
JAVA_HOME_SEL=""
java_major() { # java_major <java binary>: print the feature version (17, 21, 25, ...)
  "$1" -XshowSettings:properties -version 2>&1 | awk -F'= ' '/java.specification.version/ {print $2; exit}'
}
find_java() {
  [ -n "$JAVA_HOME_SEL" ] && return 0
  local candidates=() c v
  [ -n "${CHRONICLE_JAVA_HOME:-}" ] && candidates+=("$CHRONICLE_JAVA_HOME")
  [ -n "${JAVA_HOME:-}" ] && candidates+=("$JAVA_HOME")
  if command -v java >/dev/null 2>&1; then
    candidates+=("$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")")
  fi
  for c in /usr/lib/jvm/*; do candidates+=("$c"); done
  for c in "${candidates[@]}"; do
    [ -x "$c/bin/java" ] || continue
    v="$(java_major "$c/bin/java" || true)"
    if [ -n "$v" ] && [ "${v%%.*}" -ge 17 ] 2>/dev/null; then
      JAVA_HOME_SEL=$c
      return 0
    fi
  done
  apt_install openjdk-17-jre-headless
  JAVA_HOME_SEL=/usr/lib/jvm/java-17-openjdk-amd64
  [ -x "$JAVA_HOME_SEL/bin/java" ] || JAVA_HOME_SEL="$(dirname "$(dirname "$(readlink -f "$(command -v java)")")")"
}

# mvn_quiet <log name> <args>...: run Maven against the project's local repository.
mvn_quiet() {
  local log="$LOG_DIR/$1.log"
  shift
  need_cmd mvn maven
  find_java
  JAVA_HOME=$JAVA_HOME_SEL mvn -B -q -Dstyle.color=never -Dmaven.repo.local="$M2_REPO" "$@" >>"$log" 2>&1 ||
    { tail -n 30 "$log" >&2; die "maven failed: mvn $* (log: $(rel "$log"))"; }
}
