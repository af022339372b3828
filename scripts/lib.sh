# shellcheck shell=bash
#
# Helpers sourced by scripts/up.sh, scripts/down.sh and scripts/test.sh (Debian with apt, run as root or with
# sudo): make sure PostgreSQL, RabbitMQ and nginx are installed and running, wait for HTTP endpoints, and start and
# stop the processes whose PIDs live under .run/pids/.
#
# Every ensure_* function is idempotent: it says nothing when the thing is already there, says what it does when
# it has to install or start something, and exits non-zero with a clear message when it cannot.

RUN_DIR="$PWD/.run"
PG_HOST=127.0.0.1
PG_PORT=5432
PG_SERVER_URL="postgres://postgres:postgres@$PG_HOST:$PG_PORT"

log() { printf '==> %s\n' "$*" >&2; }
warn() { printf 'warning: %s\n' "$*" >&2; }
die() {
    printf 'error: %s\n' "$*" >&2
    exit 1
}

as_root() {
    if [[ $(id -u) -eq 0 ]]; then
        "$@"
    elif command -v sudo >/dev/null; then
        sudo "$@"
    else
        die "need root to run '$*' (not root and no sudo)"
    fi
}

_apt_updated=0

apt_update_once() {
    [[ $_apt_updated -eq 0 ]] || return 0
    as_root env DEBIAN_FRONTEND=noninteractive apt-get update -qq || die "apt-get update failed"
    _apt_updated=1
}

# apt_install PACKAGE...: installs packages, refreshing the package lists at most once per run. Services are kept
# from starting during the install (policy-rc.d): these scripts start what they need themselves, and a system
# nginx must not grab port 80.
apt_install() {
    command -v apt-get >/dev/null || die "cannot install $*: apt-get not found; install $* by hand"
    log "installing $*"
    apt_update_once
    local added_policy=0 status=0
    if [[ ! -e /usr/sbin/policy-rc.d ]]; then
        printf '#!/bin/sh\nexit 101\n' | as_root tee /usr/sbin/policy-rc.d >/dev/null
        as_root chmod +x /usr/sbin/policy-rc.d
        added_policy=1
    fi
    as_root env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null ||
        status=$?
    if [[ $added_policy -eq 1 ]]; then
        as_root rm -f /usr/sbin/policy-rc.d
    fi
    [[ $status -eq 0 ]] || die "apt-get install $* failed (exit $status)"
}

# ensure_command COMMAND PACKAGE: installs PACKAGE unless COMMAND is on the PATH.
ensure_command() {
    command -v "$1" >/dev/null || apt_install "$2"
    command -v "$1" >/dev/null || die "$2 is installed but '$1' is still not on the PATH"
}

# wait_until TIMEOUT_SECONDS COMMAND...: runs COMMAND every half second until it succeeds; fails after the timeout.
wait_until() {
    local deadline=$((SECONDS + $1))
    shift
    until "$@" >/dev/null 2>&1; do
        ((SECONDS < deadline)) || return 1
        sleep 0.5
    done
}

# --- PostgreSQL ---------------------------------------------------------------------------------------------------

pg_accepting() { pg_isready -q -h "$PG_HOST" -p "$PG_PORT"; }

pg_query() { psql "$PG_SERVER_URL/postgres" -X -q -A -t -v ON_ERROR_STOP=1 "$@"; }

# The cluster to start when nothing answers on port 5432: the one configured for that port, else the newest.
_pg_cluster_for_port() {
    pg_lsclusters --no-header 2>/dev/null | awk -v port="$PG_PORT" '
        $3 == port { print $1, $2; found = 1; exit }
        { last = $1 " " $2 }
        END { if (!found && last != "") print last }'
}

_pg_start_cluster() {
    local cluster
    cluster=$(_pg_cluster_for_port)
    if [[ -z $cluster ]]; then
        local version
        version=$(find /usr/lib/postgresql -mindepth 1 -maxdepth 1 -printf '%f\n' 2>/dev/null | sort -n | tail -n 1)
        [[ -n $version ]] || die "PostgreSQL is installed but no server version found under /usr/lib/postgresql"
        log "creating PostgreSQL cluster $version main on port $PG_PORT"
        as_root pg_createcluster --port "$PG_PORT" "$version" main >/dev/null || die "pg_createcluster failed"
        cluster="$version main"
    fi
    log "starting PostgreSQL cluster $cluster"
    # shellcheck disable=SC2086 # "version name" splits into two arguments on purpose
    as_root pg_ctlcluster $cluster start || die "pg_ctlcluster $cluster start failed (see /var/log/postgresql/)"
    wait_until 30 pg_accepting ||
        die "PostgreSQL cluster $cluster started but does not accept connections on $PG_HOST:$PG_PORT"
}

# Sets the password the services use, so a scram/md5 setup works as well as a trust one. Runs over the local
# socket as the postgres OS user, which peer authentication lets in whatever the TCP rules say.
_pg_set_password() {
    id postgres >/dev/null 2>&1 || return 0
    (cd / && as_root su postgres -c "psql -X -q -c \"ALTER USER postgres PASSWORD 'postgres'\"") >/dev/null 2>&1 || true
}

ensure_postgres() {
    if ! command -v pg_ctlcluster >/dev/null || ! command -v psql >/dev/null || ! command -v pg_isready >/dev/null; then
        apt_install postgresql postgresql-client
    fi
    pg_accepting || _pg_start_cluster
    _pg_set_password
    pg_query -c 'SELECT 1' >/dev/null 2>&1 ||
        die "PostgreSQL answers on $PG_HOST:$PG_PORT but rejects postgres:postgres (check pg_hba.conf)"
    local max_connections
    max_connections=$(pg_query -c 'SHOW max_connections')
    if ((max_connections < 200)); then
        warn "PostgreSQL max_connections is $max_connections;" \
            "four services with DB_POOL_SIZE=16 plus parallel tests may need more"
    fi
}

# --- RabbitMQ -----------------------------------------------------------------------------------------------------

rabbitmq_running() { rabbitmqctl -q status >/dev/null 2>&1; }

ensure_rabbitmq() {
    if ! command -v rabbitmqctl >/dev/null || ! command -v rabbitmq-server >/dev/null; then
        apt_install rabbitmq-server
    fi
    rabbitmq_running && return 0
    log "starting RabbitMQ"
    as_root rabbitmq-server -detached || die "rabbitmq-server -detached failed (see /var/log/rabbitmq/)"
    # The node takes a moment to appear; until it does, await_startup fails at once instead of waiting.
    wait_until 60 rabbitmqctl -q await_startup --timeout 5 ||
        die "RabbitMQ did not start within 60 s (see /var/log/rabbitmq/)"
}

# --- Chromium -----------------------------------------------------------------------------------------------------

# ensure_chromium: headless Chromium and its WebDriver, for the end-to-end test of the coordinator's operator page.
ensure_chromium() {
    [[ -x /usr/bin/chromedriver && -x /usr/bin/chromium ]] && return 0
    apt_install chromium chromium-driver
}

# --- nginx --------------------------------------------------------------------------------------------------------

nginx_bin() { command -v nginx || echo /usr/sbin/nginx; }

ensure_nginx() {
    [[ -x $(nginx_bin) ]] && return 0
    command -v apt-get >/dev/null || die "nginx is missing and apt-get is not available; install nginx by hand"
    apt_update_once
    # nginx-light is enough for a reverse proxy; newer Debian releases only have nginx.
    if apt-cache show nginx-light >/dev/null 2>&1; then
        apt_install nginx-light
    else
        apt_install nginx
    fi
    [[ -x $(nginx_bin) ]] || die "nginx was installed but no nginx binary was found"
}

# nginx_stream_module: prints the path of nginx's stream (TCP proxy) module, installing it if it is missing.
nginx_stream_module() {
    local module=/usr/lib/nginx/modules/ngx_stream_module.so
    ensure_nginx
    [[ -e $module ]] || apt_install libnginx-mod-stream
    [[ -e $module ]] || die "libnginx-mod-stream is installed but $module is missing"
    echo "$module"
}

# --- HTTP and processes -------------------------------------------------------------------------------------------

# wait_http URL TIMEOUT_SECONDS: waits until URL answers 2xx.
wait_http() {
    wait_until "$2" curl -fsS -o /dev/null --max-time 2 "$1"
}

# port_in_use PORT: something accepts TCP connections on 127.0.0.1:PORT.
port_in_use() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

pid_file() { echo "$RUN_DIR/pids/$1.pid"; }

# lock_run_dir: makes this script the only one starting or stopping the system, waiting for another to finish.
# The lock is held on descriptor 9 until the script exits; processes it starts must not inherit it (9>&-).
lock_run_dir() {
    mkdir -p "$RUN_DIR"
    exec 9>"$RUN_DIR/lock"
    if ! flock -n 9; then
        log "another scripts/up.sh or scripts/down.sh is running; waiting for it"
        flock -w 900 9 || die "still locked after 15 minutes: $RUN_DIR/lock"
    fi
}

# program_of NAME: the program a recorded NAME runs: NAME itself, or for a replica recorded as PROGRAM-N (N > 1,
# see scripts/up.sh) PROGRAM.
program_of() {
    if [[ $1 =~ ^(.+)-[0-9]+$ ]]; then
        echo "${BASH_REMATCH[1]}"
    else
        echo "$1"
    fi
}

# recorded_names: the names that have a PID file under .run/pids/, one a line.
recorded_names() {
    local file
    for file in "$RUN_DIR"/pids/*.pid; do
        [[ -e $file ]] || continue
        file=${file##*/}
        echo "${file%.pid}"
    done
}

# recorded_pid NAME: prints the PID recorded for NAME if that process is still alive and still runs the program
# NAME stands for (see program_of; a recycled PID belonging to something else does not count).
recorded_pid() {
    local file pid program expected
    file=$(pid_file "$1")
    [[ -s $file ]] || return 1
    pid=$(<"$file")
    [[ $pid =~ ^[0-9]+$ ]] || return 1
    program=$(ps -o comm= -p "$pid" 2>/dev/null) || return 1
    expected=$(program_of "$1")
    [[ $program == "${expected:0:15}" ]] || return 1
    echo "$pid"
}

# stop_recorded NAME...: stops the processes recorded for the NAMEs, all at once (SIGTERM, then SIGKILL for any
# still alive after 10 s), and forgets them.
stop_recorded() {
    local name pid
    local -A running=()
    for name in "$@"; do
        if pid=$(recorded_pid "$name"); then
            log "stopping $name (pid $pid)"
            kill -TERM "$pid" 2>/dev/null || true
            running[$name]=$pid
        fi
    done
    local deadline=$((SECONDS + 10))
    for name in "${!running[@]}"; do
        pid=${running[$name]}
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.1
        done
        if kill -0 "$pid" 2>/dev/null; then
            warn "$name (pid $pid) ignored SIGTERM for 10 s; sending SIGKILL"
            kill -KILL "$pid" 2>/dev/null || true
            wait_until 5 bash -c "! kill -0 $pid" || die "$name (pid $pid) survived SIGKILL"
        fi
    done
    for name in "$@"; do
        rm -f "$(pid_file "$name")"
    done
}

# --- The gateway --------------------------------------------------------------------------------------------------

# upstream_servers PORT...: the gateway's `server` lines for replicas on these ports of 127.0.0.1. max_fails=0: a
# replica is never taken out for a while after a failure. A dead one refuses a connection at once on loopback, and
# the request goes to the next replica; marked failed instead (nginx's default, for 10 s), a replica that was just
# restarted would still count as down when the next one is stopped in a rolling restart, and with every replica
# marked down nginx answers 502 ("no live upstreams") although one is up.
upstream_servers() {
    local port
    for port in "$@"; do
        printf '        server 127.0.0.1:%s max_fails=0;\n' "$port"
    done
}

# start_nginx DIR PORT ACCESS_LOG FRONT_PORT ORDER PAYMENT STOCK COORDINATOR: renders scripts/nginx.conf.template
# into DIR/nginx.conf and starts nginx with it (PID in DIR/pids/, error log in DIR/logs/, prefix DIR/nginx/): the
# gateway on 127.0.0.1:PORT, access log ACCESS_LOG (`off` or a quoted path), and with FRONT_PORT not empty the
# coordinator front on it. ORDER, PAYMENT, STOCK, COORDINATOR: the upstreams' `server` lines, one a replica.
start_nginx() {
    local dir=$1 template conf="$1/nginx.conf" nginx
    mkdir -p "$dir/pids" "$dir/logs" "$dir/nginx"
    template=$(<scripts/nginx.conf.template)
    template=${template//@RUN_DIR@/"$dir"}
    template=${template//@GATEWAY_PORT@/"$2"}
    template=${template//@ACCESS_LOG@/"$3"}
    template=${template//@COORDINATOR_FRONT_PORT@/"$4"}
    template=${template//@ORDER_SERVERS@/"$5"}
    template=${template//@PAYMENT_SERVERS@/"$6"}
    template=${template//@STOCK_SERVERS@/"$7"}
    template=${template//@COORDINATOR_SERVERS@/"$8"}
    if [[ -z $4 ]]; then
        template=$(sed '/#@REPLICAS_ONLY@/,/#@END_REPLICAS_ONLY@/d' <<<"$template")
    fi
    printf '%s\n' "$template" >"$conf"
    nginx=$(nginx_bin)
    # -e: the error log to use before the configuration is read (the built-in one may not be writable).
    "$nginx" -q -t -p "$dir/nginx/" -e "$dir/logs/nginx-error.log" -c "$conf" || die "the generated $conf is invalid"
    "$nginx" -p "$dir/nginx/" -e "$dir/logs/nginx-error.log" -c "$conf" 9>&- ||
        die "nginx failed to start (see $dir/logs/nginx-error.log)"
}
