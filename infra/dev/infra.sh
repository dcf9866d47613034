# shellcheck shell=bash
# Chronicle's ./dev: installing and running the infrastructure: PostgreSQL, Kafka and
# Elasticsearch as native processes, or all of them through Docker Compose; infra_up/infra_down.
# Sourced by ./dev after infra/dev/common.sh, not run on its own.
# shellcheck disable=SC2164 # ./dev runs under set -e: a failed cd stops it

# Infrastructure services, in start order.
SERVICES=(postgres kafka elasticsearch)

# ---------------------------------------------------------------------------------------------
# Docker Compose (infra/docker-compose.yml)
# ---------------------------------------------------------------------------------------------
compose_up() {
  say "infrastructure: Docker Compose ($(rel "$COMPOSE_FILE"))"
  compose up -d --wait
  postgres_bootstrap
}

# ---------------------------------------------------------------------------------------------
# PostgreSQL (native): the project's own cluster in .chronicle/postgres/data
# ---------------------------------------------------------------------------------------------
# As root the cluster belongs to the `postgres` OS user (postgres refuses to run as root) and
# its superuser is `postgres`; otherwise it belongs to the current user, superuser of that name.
if is_root; then PG_SUPERUSER=postgres; else PG_SUPERUSER="$(id -un)"; fi

# pg_as <command>...: run a PostgreSQL program as the cluster's OS user.
pg_as() {
  if is_root; then
    (cd / && runuser -u postgres -- "$@")
  else
    "$@"
  fi
}

# pg_bin: the bin directory of the server that matches the data dir, else the newest installed.
pg_bin() {
  local v
  if [ -s "$PG_DATA/PG_VERSION" ] && [ -x "/usr/lib/postgresql/$(cat "$PG_DATA/PG_VERSION")/bin/postgres" ]; then
    printf '/usr/lib/postgresql/%s/bin' "$(cat "$PG_DATA/PG_VERSION")"
    return
  fi
  v="$(find /usr/lib/postgresql -mindepth 3 -maxdepth 3 -path '*/bin/postgres' 2>/dev/null |
    awk -F/ '{print $5}' | sort -V | tail -n 1)"
  [ -n "$v" ] || return 1
  printf '/usr/lib/postgresql/%s/bin' "$v"
}

postgres_install() {
  pg_bin >/dev/null && return 0
  say "postgres: no PostgreSQL server installed: installing Debian's postgresql package"
  # Keep the package from creating (and starting) its own 'main' cluster on port 5432: we run
  # our own cluster there. (A drop-in read by postgresql-common's createcluster.conf.)
  as_root mkdir -p /etc/postgresql-common/createcluster.d
  printf '# written by Chronicle ./dev: no default cluster on package install\ncreate_main_cluster = false\n' |
    as_root tee /etc/postgresql-common/createcluster.d/chronicle-no-main-cluster.conf >/dev/null
  apt_install postgresql
  pg_bin >/dev/null || die "postgres: installed, but no /usr/lib/postgresql/*/bin/postgres found"
}

postgres_running() {
  [ -f "$PG_DATA/postmaster.pid" ] && pg_as "$(pg_bin)/pg_ctl" status -D "$PG_DATA" >/dev/null 2>&1
}

postgres_pid() { head -n 1 "$PG_DATA/postmaster.pid" 2>/dev/null || true; }

# Can we log in as the migration role? (Used to accept a server we did not start.)
postgres_admin_login() {
  PGCONNECT_TIMEOUT=3 psql "$DATABASE_ADMIN_URL" -X -qAt -c 'select 1' >/dev/null 2>&1
}

postgres_up() {
  local bin
  postgres_install
  bin="$(pg_bin)"
  if postgres_running; then
    say "postgres: already running at 127.0.0.1:$PG_PORT (pid $(postgres_pid), data $(rel "$PG_DATA"))"
    postgres_bootstrap
    return 0
  fi
  if port_open 127.0.0.1 "$PG_PORT"; then
    if postgres_admin_login; then
      say "postgres: using the server already listening at 127.0.0.1:$PG_PORT (not started by this checkout)"
      PG_EXTERNAL=1
      return 0
    fi
    die "postgres: port $PG_PORT is taken by another server that does not accept chronicle_owner (the system cluster? see pg_lsclusters); stop it first"
  fi

  mkdir -p "$PG_DIR" "$PG_RUN"
  touch "$LOG_DIR/postgres.log"
  if is_root; then
    id postgres >/dev/null 2>&1 || useradd --system --no-create-home --shell /usr/sbin/nologin postgres
    chown postgres: "$PG_DIR" "$PG_RUN" "$LOG_DIR/postgres.log"
    [ -d "$PG_DATA" ] && chown -R postgres: "$PG_DATA"
    ensure_traversable postgres "$PG_DIR"
  fi
  chmod 700 "$PG_RUN"

  if [ ! -s "$PG_DATA/PG_VERSION" ]; then
    say "postgres: creating a cluster in $(rel "$PG_DATA") ($bin)"
    pg_as "$bin/initdb" -D "$PG_DATA" -U "$PG_SUPERUSER" --encoding=UTF8 --locale=C.UTF-8 \
      --auth-local=peer --auth-host=scram-sha-256 >>"$LOG_DIR/postgres.log" 2>&1 ||
      fail_service postgres "initdb failed"
    # Our settings, appended once (later lines win in postgresql.conf).
    pg_as tee -a "$PG_DATA/postgresql.conf" >/dev/null <<EOF

# ---- Chronicle (./dev) ----
listen_addresses = '127.0.0.1'
port = $PG_PORT
unix_socket_directories = '$PG_RUN'
max_connections = 200
log_line_prefix = '%m [%p] %q%u@%d '
log_timezone = 'UTC'
timezone = 'UTC'
EOF
  fi

  pg_as "$bin/pg_ctl" start -D "$PG_DATA" -l "$LOG_DIR/postgres.log" -w -t "$PG_TIMEOUT" -s ||
    fail_service postgres "did not start within ${PG_TIMEOUT}s"
  postgres_bootstrap
  say "postgres: started at 127.0.0.1:$PG_PORT (pid $(postgres_pid))"
}

postgres_down() {
  if ! pg_bin >/dev/null || ! postgres_running; then
    say "postgres: not running"
    return 0
  fi
  pg_as "$(pg_bin)/pg_ctl" stop -D "$PG_DATA" -m fast -w -t 60 -s
  say "postgres: stopped"
}

# pg_super_psql <psql args>...: psql as the superuser: over the unix socket of our own cluster,
# or inside the container under Docker Compose. Stops at the first error.
pg_super_psql() {
  if [ "$(infra_mode)" = compose ]; then
    compose exec -T postgres psql -U postgres -d postgres -X -q -v ON_ERROR_STOP=1 "$@"
  else
    pg_as "$(pg_bin)/psql" -h "$PG_RUN" -p "$PG_PORT" -U "$PG_SUPERUSER" -d postgres -X -q -v ON_ERROR_STOP=1 "$@"
  fi
}

# Roles and database (idempotent); see infra/postgres/bootstrap.sql.
postgres_bootstrap() {
  pg_super_psql -f - <"$ROOT/infra/postgres/bootstrap.sql" >/dev/null ||
    die "postgres: applying infra/postgres/bootstrap.sql failed"
}

# ./dev test's check that bootstrap.sql never resets an existing role's password: each
# role's password is changed, bootstrap.sql applied again, and no stored hash may move.
# The original hashes are put back afterwards (ALTER ROLE accepts a SCRAM verifier as is).
postgres_check_bootstrap_keeps_passwords() {
  local roles=(chronicle_owner chronicle_app chronicle_relay chronicle_projector) role
  local hashes="SELECT string_agg(rolname || '=' || coalesce(rolpassword, ''), ' ' ORDER BY rolname)
    FROM pg_authid WHERE rolname IN ('chronicle_owner', 'chronicle_app', 'chronicle_relay', 'chronicle_projector')"
  local -A original=()
  for role in "${roles[@]}"; do
    original[$role]="$(pg_super_psql -At -c "SELECT rolpassword FROM pg_authid WHERE rolname = '$role'")"
    pg_super_psql -c "ALTER ROLE $role PASSWORD 'bootstrap-check-$RANDOM$RANDOM'"
  done
  local changed after
  changed="$(pg_super_psql -At -c "$hashes")"
  postgres_bootstrap
  after="$(pg_super_psql -At -c "$hashes")"
  for role in "${roles[@]}"; do
    pg_super_psql -c "ALTER ROLE $role PASSWORD '${original[$role]}'"
  done
  [ "$changed" = "$after" ] || die "postgres: infra/postgres/bootstrap.sql reset an existing role's password"
  say "postgres: bootstrap.sql leaves existing roles' passwords alone (checked)"
}

# Drop scratch databases left behind by earlier test runs.
postgres_drop_test_databases() {
  local sql="SELECT format('DROP DATABASE %I WITH (FORCE)', datname) FROM pg_database WHERE datname LIKE 'chronicle\\_test\\_%'"
  if [ "${PG_EXTERNAL:-0}" = 1 ]; then
    # Not our server: chronicle_owner owns the test databases it created.
    printf '%s\n\\gexec\n' "$sql" | psql "$DATABASE_ADMIN_URL" -X -q -v ON_ERROR_STOP=1 >/dev/null ||
      warn "could not drop leftover chronicle_test_% databases"
    return 0
  fi
  printf '%s\n\\gexec\n' "$sql" | pg_super_psql -f - >/dev/null ||
    warn "could not drop leftover chronicle_test_% databases"
}

# ---------------------------------------------------------------------------------------------
# Kafka (native): KRaft combined broker+controller from Maven Central jars
# ---------------------------------------------------------------------------------------------
# A Kafka command-line tool (class name + args), quiet logging, bounded in time
# (KAFKA_TOOL_TIMEOUT seconds, default 120).
kafka_tool() {
  find_java
  timeout "${KAFKA_TOOL_TIMEOUT:-120}" "$JAVA_HOME_SEL/bin/java" -Xmx256m \
    -Dlog4j2.configurationFile="$ROOT/infra/kafka/tools-log4j2.properties" -cp "$KAFKA_LIBS/*" "$@"
}

# Fetch Kafka and its runtime dependencies once (again only when infra/kafka/pom.xml changes).
kafka_install() {
  local want stamp="$KAFKA_LIBS/.pom.sha256"
  want="$(sha256sum "$ROOT/infra/kafka/pom.xml" | cut -d' ' -f1)"
  [ -f "$stamp" ] && [ "$(cat "$stamp")" = "$want" ] && return 0
  say "kafka: fetching Kafka and its runtime dependencies from Maven Central (once)"
  rm -rf "$KAFKA_LIBS"
  mkdir -p "$KAFKA_LIBS"
  mvn_quiet maven -f "$ROOT/infra/kafka/pom.xml" "$MAVEN_DEPENDENCY_PLUGIN:copy-dependencies" \
    -DoutputDirectory="$KAFKA_LIBS" -DincludeScope=runtime
  printf '%s\n' "$want" >"$stamp"
}

# Runtime copy of infra/kafka/server.properties with an absolute log.dirs.
kafka_config() {
  awk -v dir="$KAFKA_DATA" '/^log\.dirs=/ { print "log.dirs=" dir; next } { print }' \
    "$ROOT/infra/kafka/server.properties" >"$KAFKA_PROPS"
}

# Format the KRaft storage once (skipped when meta.properties exists).
kafka_format() {
  [ -f "$KAFKA_DATA/meta.properties" ] && return 0
  mkdir -p "$KAFKA_DATA"
  if [ ! -s "$KAFKA_DIR/cluster.id" ]; then
    kafka_tool kafka.tools.StorageTool random-uuid | tail -n 1 >"$KAFKA_DIR/cluster.id"
  fi
  say "kafka: formatting storage in $(rel "$KAFKA_DATA") (cluster id $(cat "$KAFKA_DIR/cluster.id"))"
  kafka_tool kafka.tools.StorageTool format --standalone -t "$(cat "$KAFKA_DIR/cluster.id")" \
    -c "$KAFKA_PROPS" >>"$LOG_DIR/kafka.log" 2>&1 || fail_service kafka "storage format failed"
}

kafka_topics() { kafka_tool org.apache.kafka.tools.TopicCommand --bootstrap-server "$KAFKA_BROKERS" "$@"; }

KAFKA_LOG_OFFSET=0
kafka_started_line() {
  tail -c +"$((KAFKA_LOG_OFFSET + 1))" "$LOG_DIR/kafka.log" | grep -q 'Kafka Server started'
}
kafka_ready() {
  port_open 127.0.0.1 9092 && kafka_started_line &&
    KAFKA_TOOL_TIMEOUT=60 kafka_topics --list >/dev/null 2>&1
}

kafka_up() {
  if pid_alive kafka; then
    say "kafka: already running at $KAFKA_BROKERS (pid $(read_pid kafka))"
    return 0
  fi
  if port_open 127.0.0.1 9092; then
    say "kafka: using the broker already listening at 127.0.0.1:9092 (not started by this checkout)"
    return 0
  fi
  kafka_install
  mkdir -p "$KAFKA_DATA"
  kafka_config
  kafka_format
  touch "$LOG_DIR/kafka.log"
  KAFKA_LOG_OFFSET="$(stat -c %s "$LOG_DIR/kafka.log")"
  find_java
  # shellcheck disable=SC2086 # KAFKA_HEAP_OPTS is a list of JVM options
  start_bg kafka "$JAVA_HOME_SEL/bin/java" $KAFKA_HEAP_OPTS -server -XX:+UseG1GC -XX:MaxGCPauseMillis=20 \
    -XX:InitiatingHeapOccupancyPercent=35 -XX:+ExplicitGCInvokesConcurrent -Djava.awt.headless=true \
    -Dlog4j2.configurationFile="$ROOT/infra/kafka/log4j2.properties" \
    -cp "$KAFKA_LIBS/*" kafka.Kafka "$KAFKA_PROPS"
  wait_ready kafka "$KAFKA_TIMEOUT" kafka_ready
  say "kafka: started at $KAFKA_BROKERS (pid $(read_pid kafka))"
}

kafka_down() { stop_bg kafka 60; }

# ---------------------------------------------------------------------------------------------
# Elasticsearch (native): the integ-test-zip distribution from Maven Central
# ---------------------------------------------------------------------------------------------
es_health() {
  curl -fsS --max-time 5 "$ELASTICSEARCH_URL/_cluster/health?wait_for_status=yellow&timeout=3s" >/dev/null 2>&1
}

# Fetch (mvn dependency:copy, so Maven's repository settings apply) and unzip once.
es_install() {
  [ -x "$ES_HOME/bin/elasticsearch" ] && return 0
  need_cmd unzip unzip
  say "elasticsearch: fetching Elasticsearch $ES_VERSION (integ-test-zip) from Maven Central (once, ~100 MB)"
  mkdir -p "$ES_DIR/download" "$ES_DIR/dist"
  # Run where there is no pom.xml: dependency:copy needs no project.
  (cd "$ES_DIR/download" && mvn_quiet maven "$MAVEN_DEPENDENCY_PLUGIN:copy" \
    -Dartifact="org.elasticsearch.distribution.integ-test-zip:elasticsearch:$ES_VERSION:zip" \
    -DoutputDirectory="$ES_DIR/download")
  rm -rf "$ES_DIR/dist/.unzip"
  unzip -q "$ES_DIR/download/elasticsearch-$ES_VERSION.zip" -d "$ES_DIR/dist/.unzip"
  rm -rf "$ES_HOME"
  mv "$ES_DIR/dist/.unzip/elasticsearch-$ES_VERSION" "$ES_HOME"
  mkdir -p "$ES_HOME/plugins" # not in the integ-test-zip; Elasticsearch expects it
  rm -rf "$ES_DIR/dist/.unzip" "$ES_DIR/download" # the zip stays in .chronicle/m2
}

# Config dir: the distribution's files copied once, elasticsearch.yml written on every start.
es_config() {
  mkdir -p "$ES_CONF" "$ES_DIR/data" "$ES_DIR/logs" "$ES_DIR/tmp"
  [ -f "$ES_CONF/jvm.options" ] || cp -R "$ES_HOME/config/." "$ES_CONF/"
  {
    cat <<EOF
# Written by ./dev on every start; edit infra/dev/infra.sh, not this file.
cluster.name: chronicle
node.name: chronicle-1
discovery.type: single-node
network.host: 127.0.0.1
http.port: 9200
path.data: $ES_DIR/data
path.logs: $ES_DIR/logs
# A development node: a nearly full disk must not turn the indices read-only.
cluster.routing.allocation.disk.threshold_enabled: false
EOF
    # The setting is unknown (a startup error) when the distribution has no security module.
    if [ -d "$ES_HOME/modules/x-pack-security" ]; then
      printf 'xpack.security.enabled: false\n'
    fi
  } >"$ES_CONF/elasticsearch.yml"
}

elasticsearch_up() {
  local run_as=()
  if pid_alive elasticsearch; then
    say "elasticsearch: already running at $ELASTICSEARCH_URL (pid $(read_pid elasticsearch))"
    return 0
  fi
  if port_open 127.0.0.1 9200; then
    es_health || die "elasticsearch: port 9200 is taken by something that is not a healthy Elasticsearch"
    say "elasticsearch: using the node already listening at 127.0.0.1:9200 (not started by this checkout)"
    return 0
  fi
  need_cmd curl curl
  find_java
  es_install
  es_config
  touch "$LOG_DIR/elasticsearch.log"
  if is_root; then
    id "$ES_USER" >/dev/null 2>&1 ||
      useradd --system --no-create-home --home-dir /nonexistent --shell /usr/sbin/nologin "$ES_USER"
    # Everything Elasticsearch reads or writes belongs to that user.
    find "$ES_DIR" ! -user "$ES_USER" -exec chown "$ES_USER:" {} +
    ensure_traversable "$ES_USER" "$ES_DIR"
    ensure_traversable "$ES_USER" "$JAVA_HOME_SEL"
    run_as=(setpriv --reuid="$ES_USER" --regid="$ES_USER" --init-groups --)
  fi
  # The working directory is where the JVM's relative gc.log / hs_err files go.
  (
    cd "$ES_DIR/logs"
    ulimit -n 65535 2>/dev/null || true # Elasticsearch wants 65535 files; keep the limit if we may not raise it
    start_bg elasticsearch env HOME="$ES_DIR" ES_HOME="$ES_HOME" ES_PATH_CONF="$ES_CONF" \
      ES_JAVA_HOME="$JAVA_HOME_SEL" ES_JAVA_OPTS="$ES_JAVA_OPTS" ES_TMPDIR="$ES_DIR/tmp" \
      "${run_as[@]}" "$ES_HOME/bin/elasticsearch"
  )
  wait_ready elasticsearch "$ES_TIMEOUT" es_health
  say "elasticsearch: started at $ELASTICSEARCH_URL (pid $(read_pid elasticsearch))"
}

elasticsearch_down() { stop_bg elasticsearch 60; }

# ---------------------------------------------------------------------------------------------
# Infrastructure as a whole
# ---------------------------------------------------------------------------------------------
infra_up() {
  ensure_dirs
  if [ "$(infra_mode)" = compose ]; then
    compose_up
  else
    local s
    for s in "${SERVICES[@]}"; do "${s}_up"; done
  fi
  printf '%s\n' "$(infra_mode)" >"$RUN_DIR/infra.mode"
}

infra_down() {
  if [ "$(infra_mode)" = compose ]; then
    compose down
  else
    local i
    for ((i = ${#SERVICES[@]} - 1; i >= 0; i--)); do "${SERVICES[i]}_down"; done
  fi
  rm -f "$RUN_DIR/infra.mode"
}
