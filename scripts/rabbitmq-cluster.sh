#!/usr/bin/env bash
#
# A RabbitMQ cluster of private nodes on this machine behind one TCP port, the way a Kubernetes Service fronts a
# RabbitmqCluster: clients connect to the proxy, which hands each connection to a node that is up. The machine's
# own node (rabbit@..., port 5672) is never touched.
#
# Usage:
#   scripts/rabbitmq-cluster.sh start [N]      start N nodes (default 3), join them into one cluster, create the
#                                              services' user and vhost, start the proxy, and return once the
#                                              proxy accepts connections. A healthy cluster of N nodes is left as
#                                              it is; anything else of an earlier run is stopped first.
#   scripts/rabbitmq-cluster.sh stop           stop the proxy and every node, and delete the nodes' data (the
#                                              logs stay). Nothing running is not an error.
#   scripts/rabbitmq-cluster.sh url            print the AMQP URL the services should use (the proxy's); services
#                                              on the cluster also want AMQP_QUORUM_QUEUES=true
#   scripts/rabbitmq-cluster.sh status         print each node's state and memory (RSS), the proxy's, the total
#   scripts/rabbitmq-cluster.sh kill I         SIGKILL node I (1..N), as a crash would
#   scripts/rabbitmq-cluster.sh revive I       start node I again after a kill; it rejoins the cluster
#   scripts/rabbitmq-cluster.sh restart I      stop node I gracefully (SIGTERM, as Kubernetes does), start it again
#                                              and return once it is back in the cluster
#   scripts/rabbitmq-cluster.sh leader QUEUE   print the index of the node that leads quorum queue QUEUE
#   scripts/rabbitmq-cluster.sh ctl I ARGS...  run `rabbitmqctl ARGS` against node I, with the cluster's cookie
# Exit status 0 on success, else non-zero with the reason on stderr.
#
# Node I is named NAME-I@localhost (NAME: wdm) and listens on 127.0.0.1 only: AMQP on port BASE+I, Erlang
# distribution on DIST_BASE+I. The proxy (nginx's stream module) listens on 127.0.0.1:BASE. Everything lives under
# DIR (.run/rabbitmq-cluster/): node-I/ (config, data, pid file), log/ (one log per node, the proxy's),
# home/.erlang.cookie (the cluster's own Erlang cookie, made at the first start), proxy/ (nginx's configuration and
# pid file).
#
# Environment: RABBITMQ_CLUSTER_PORT (BASE, default 5700), RABBITMQ_CLUSTER_DIST_PORT (DIST_BASE, default 25700),
# RABBITMQ_CLUSTER_USER and RABBITMQ_CLUSTER_PASSWORD (checkout, checkout), RABBITMQ_CLUSTER_VHOST (checkout),
# RABBITMQ_CLUSTER_DIR (DIR) and RABBITMQ_CLUSTER_NAME (NAME), so that a test can run a cluster of its own beside
# the one scripts/up.sh starts.
#
# Installs what is missing with apt (rabbitmq-server, nginx, libnginx-mod-stream); run as root, the nodes run as
# the rabbitmq user.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CLUSTER_DIR="${RABBITMQ_CLUSTER_DIR:-$RUN_DIR/rabbitmq-cluster}"
NODE_PREFIX="${RABBITMQ_CLUSTER_NAME:-wdm}"
BASE_PORT="${RABBITMQ_CLUSTER_PORT:-5700}"
DIST_BASE="${RABBITMQ_CLUSTER_DIST_PORT:-25700}"
AMQP_USER="${RABBITMQ_CLUSTER_USER:-checkout}"
AMQP_PASSWORD="${RABBITMQ_CLUSTER_PASSWORD:-checkout}"
AMQP_VHOST="${RABBITMQ_CLUSTER_VHOST:-checkout}"
RABBIT_BIN=/usr/lib/rabbitmq/bin
# The OS user the nodes run as when this script runs as root (as the Debian package's own node does).
BROKER_OS_USER=rabbitmq
START_TIMEOUT=120
STOP_TIMEOUT=20

node_name() { echo "$NODE_PREFIX-$1@localhost"; }
node_dir() { echo "$CLUSTER_DIR/node-$1"; }
node_port() { echo $((BASE_PORT + $1)); }
dist_port() { echo $((DIST_BASE + $1)); }
proxy_pid_file() { echo "$CLUSTER_DIR/proxy/nginx.pid"; }
amqp_url() { echo "amqp://$AMQP_USER:$AMQP_PASSWORD@127.0.0.1:$BASE_PORT/$AMQP_VHOST"; }

# The number of nodes of the cluster last started, 0 if none.
node_count() {
    if [[ -s $CLUSTER_DIR/nodes ]]; then cat "$CLUSTER_DIR/nodes"; else echo 0; fi
}

# live_pid FILE: prints the PID in FILE if that process is alive.
live_pid() {
    local pid
    [[ -s $1 ]] || return 1
    pid=$(<"$1")
    [[ $pid =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null && echo "$pid"
}

node_pid() { live_pid "$(node_dir "$1")/pid"; }

# broker_command TOOL ARGS...: sets BROKER_CMD to TOOL (one of RabbitMQ's scripts) with the cluster's environment:
# its cookie (through HOME) and its own rabbitmq-env.conf instead of the machine's, which names the machine's node.
# As root, it runs as the rabbitmq user. Extra environment for the tool goes in BROKER_ENV.
broker_command() {
    local tool=$1
    shift
    BROKER_CMD=(env HOME="$CLUSTER_DIR/home" RABBITMQ_CONF_ENV_FILE="$CLUSTER_DIR/rabbitmq-env.conf"
        "${BROKER_ENV[@]}" "$RABBIT_BIN/$tool" "$@")
    if [[ $(id -u) -eq 0 ]]; then
        BROKER_CMD=(runuser -u "$BROKER_OS_USER" -- "${BROKER_CMD[@]}")
    fi
}
BROKER_ENV=()

# ctl I ARGS...: rabbitmqctl ARGS against node I.
ctl() {
    local node
    node=$(node_name "$1")
    shift
    broker_command rabbitmqctl -q -n "$node" "$@"
    (cd "$CLUSTER_DIR" && "${BROKER_CMD[@]}" </dev/null)
}

ensure_installed() {
    [[ -x $RABBIT_BIN/rabbitmq-server && -x $RABBIT_BIN/rabbitmqctl ]] || apt_install rabbitmq-server
    [[ -x $RABBIT_BIN/rabbitmq-server ]] || die "rabbitmq-server is installed but $RABBIT_BIN/rabbitmq-server is missing"
    STREAM_MODULE=$(nginx_stream_module)
}

refuse_busy_ports() {
    local n=$1 i port
    for port in "$BASE_PORT" $(for ((i = 1; i <= n; i++)); do node_port "$i" && dist_port "$i"; done); do
        ! port_in_use "$port" || die "port $port is in use (set RABBITMQ_CLUSTER_PORT / RABBITMQ_CLUSTER_DIST_PORT)"
    done
}

# Writes the configuration of N nodes, and the cluster's cookie unless it has one.
prepare() {
    local n=$1 i dir
    mkdir -p "$CLUSTER_DIR/home" "$CLUSTER_DIR/log" "$CLUSTER_DIR/proxy"
    local cookie="$CLUSTER_DIR/home/.erlang.cookie"
    if [[ ! -s $cookie ]]; then
        (umask 077 && head -c 24 /dev/urandom | od -An -tx1 | tr -d ' \n' >"$cookie")
    fi
    chmod 400 "$cookie"
    # Distribution and epmd on loopback only, as the machine's own node has it.
    cat >"$CLUSTER_DIR/rabbitmq-env.conf" <<'EOF'
export ERL_EPMD_ADDRESS=127.0.0.1
export ERL_FLAGS="-kernel inet_dist_use_interface {127,0,0,1}"
EOF
    for ((i = 1; i <= n; i++)); do
        dir=$(node_dir "$i")
        mkdir -p "$dir/mnesia"
        # Three nodes share the machine, so each raises its memory alarm at a third of the usual share. A blank
        # node joins node 1 as it boots (peer discovery); node 1 finds only itself and forms the cluster.
        cat >"$dir/rabbitmq.conf" <<EOF
listeners.tcp.local = 127.0.0.1:$(node_port "$i")
cluster_formation.peer_discovery_backend = classic_config
cluster_formation.classic_config.nodes.1 = $(node_name 1)
vm_memory_high_watermark.relative = 0.15
log.console = false
log.file.level = info
EOF
        echo '[].' >"$dir/enabled_plugins"
    done
    echo "$n" >"$CLUSTER_DIR/nodes"
    if [[ $(id -u) -eq 0 ]]; then
        chown -R "$BROKER_OS_USER:$BROKER_OS_USER" "$CLUSTER_DIR"
    fi
}

# start_node I: starts node I in the background (its own session, so it outlives this script).
start_node() {
    local i=$1 dir
    dir=$(node_dir "$i")
    rm -f "$dir/pid"
    # The AMQP listener is in the node's rabbitmq.conf.
    BROKER_ENV=(RABBITMQ_NODENAME="$(node_name "$i")" RABBITMQ_DIST_PORT="$(dist_port "$i")"
        RABBITMQ_MNESIA_BASE="$dir/mnesia" RABBITMQ_LOG_BASE="$CLUSTER_DIR/log" RABBITMQ_PID_FILE="$dir/pid"
        RABBITMQ_CONFIG_FILE="$dir/rabbitmq.conf" RABBITMQ_ADVANCED_CONFIG_FILE="$dir/advanced.config"
        RABBITMQ_ENABLED_PLUGINS_FILE="$dir/enabled_plugins")
    broker_command rabbitmq-server
    BROKER_ENV=()
    (cd "$CLUSTER_DIR" && exec setsid "${BROKER_CMD[@]}") >>"$CLUSTER_DIR/log/$NODE_PREFIX-$i.out" 2>&1 </dev/null 8>&- 9>&- &
}

# wait_node I: waits until node I has booted.
wait_node() {
    local i=$1 deadline=$((SECONDS + START_TIMEOUT))
    until ctl "$i" await_startup --timeout 5 >/dev/null 2>&1; do
        ((SECONDS < deadline)) ||
            die "node $(node_name "$i") did not start within $START_TIMEOUT s (see $CLUSTER_DIR/log/)"
        sleep 0.5
    done
}

# join_cluster N: makes sure nodes 2..N are in node 1's cluster, joining by hand any that peer discovery missed.
join_cluster() {
    local n=$1 i members
    ctl 1 await_online_nodes "$n" --timeout 20000 >/dev/null 2>&1 && return 0
    members=$(ctl 1 eval 'rabbit_nodes:all_running().')
    for ((i = 2; i <= n; i++)); do
        [[ $members == *"'$(node_name "$i")'"* ]] && continue
        log "joining $(node_name "$i") to the cluster by hand"
        {
            ctl "$i" stop_app && ctl "$i" reset && ctl "$i" join_cluster "$(node_name 1)" && ctl "$i" start_app
        } >>"$CLUSTER_DIR/log/join.log" 2>&1 || die "$(node_name "$i") could not join (see $CLUSTER_DIR/log/join.log)"
    done
    ctl 1 await_online_nodes "$n" --timeout 60000 || die "the cluster did not reach $n running nodes"
}

create_user_and_vhost() {
    ctl 1 list_vhosts name | grep -x "$AMQP_VHOST" >/dev/null || ctl 1 add_vhost "$AMQP_VHOST"
    ctl 1 list_users | awk '{print $1}' | grep -x "$AMQP_USER" >/dev/null || ctl 1 add_user "$AMQP_USER" "$AMQP_PASSWORD"
    ctl 1 set_permissions -p "$AMQP_VHOST" "$AMQP_USER" '.*' '.*' '.*'
}

start_proxy() {
    local n=$1 i conf="$CLUSTER_DIR/proxy/nginx.conf" servers=""
    for ((i = 1; i <= n; i++)); do
        servers+="        server 127.0.0.1:$(node_port "$i") max_fails=1 fail_timeout=2s;"$'\n'
    done
    # A node that refuses (killed, restarting) is skipped for 2 s and the connection goes to the next one. Idle
    # links are cut after an hour; AMQP heartbeats keep every live one busy.
    cat >"$conf" <<EOF
# Generated by scripts/rabbitmq-cluster.sh: one port in front of the cluster's nodes.
load_module $STREAM_MODULE;
daemon on;
worker_processes 1;
pid "$(proxy_pid_file)";
error_log "$CLUSTER_DIR/log/proxy-error.log" warn;

events {
    worker_connections 4096;
}

stream {
    upstream rabbitmq_cluster {
$servers    }
    server {
        listen 127.0.0.1:$BASE_PORT;
        proxy_pass rabbitmq_cluster;
        proxy_connect_timeout 1s;
        proxy_timeout 1h;
    }
}
EOF
    local nginx
    nginx=$(nginx_bin)
    "$nginx" -q -t -p "$CLUSTER_DIR/proxy/" -e "$CLUSTER_DIR/log/proxy-error.log" -c "$conf" ||
        die "the proxy's configuration $conf is not valid"
    "$nginx" -p "$CLUSTER_DIR/proxy/" -e "$CLUSTER_DIR/log/proxy-error.log" -c "$conf" 8>&- 9>&- ||
        die "the proxy failed to start (see $CLUSTER_DIR/log/proxy-error.log)"
    wait_until 10 port_in_use "$BASE_PORT" || die "the proxy does not accept connections on 127.0.0.1:$BASE_PORT"
}

running() {
    local n=$1 i
    [[ $(node_count) -eq $n ]] || return 1
    for ((i = 1; i <= n; i++)); do
        node_pid "$i" >/dev/null || return 1
    done
    live_pid "$(proxy_pid_file)" >/dev/null && port_in_use "$BASE_PORT" &&
        ctl 1 await_online_nodes "$n" --timeout 5000 >/dev/null 2>&1
}

# stop_pids PID...: SIGTERM, then SIGKILL for any still alive after STOP_TIMEOUT seconds.
stop_pids() {
    local pid deadline=$((SECONDS + STOP_TIMEOUT))
    [[ $# -gt 0 ]] || return 0
    kill -TERM "$@" 2>/dev/null || true
    for pid in "$@"; do
        while kill -0 "$pid" 2>/dev/null && ((SECONDS < deadline)); do
            sleep 0.2
        done
        kill -0 "$pid" 2>/dev/null && kill -KILL "$pid" 2>/dev/null || true
    done
}

stop_all() {
    local dir pid pids=()
    if pid=$(live_pid "$(proxy_pid_file)"); then
        pids+=("$pid")
    fi
    for dir in "$CLUSTER_DIR"/node-*; do
        [[ -d $dir ]] || continue
        if pid=$(live_pid "$dir/pid"); then
            pids+=("$pid")
        fi
    done
    if [[ ${#pids[@]} -gt 0 ]]; then
        log "stopping the RabbitMQ cluster (pids ${pids[*]})"
        stop_pids "${pids[@]}"
    fi
    # A stopped cluster is forgotten: the next start forms a new one (the services send again what was queued).
    rm -rf "$CLUSTER_DIR"/node-* "$CLUSTER_DIR/nodes" "$(proxy_pid_file)"
}

start() {
    local n=${1:-3} i
    [[ $n =~ ^[1-9][0-9]*$ ]] || die "start N: N must be a positive number, not '$n'"
    if running "$n"; then
        log "RabbitMQ cluster of $n nodes already running at $(amqp_url)"
        return 0
    fi
    stop_all
    ensure_installed
    refuse_busy_ports "$n"
    prepare "$n"
    log "starting $n RabbitMQ nodes ($NODE_PREFIX-1..$n@localhost, ports $(node_port 1)..$(node_port "$n"))"
    # Node 1 first, so that the others find it when they boot.
    start_node 1
    wait_node 1
    for ((i = 2; i <= n; i++)); do
        start_node "$i"
    done
    for ((i = 2; i <= n; i++)); do
        wait_node "$i"
    done
    join_cluster "$n"
    create_user_and_vhost
    start_proxy "$n"
    log "RabbitMQ cluster of $n nodes at $(amqp_url)"
}

# rss_kb PID: the resident memory of PID and its children (the VM's port programs), in KiB.
rss_kb() {
    local pid total=0 kb
    for pid in "$1" $(pgrep -P "$1" || true); do
        kb=$(awk '/^VmRSS:/ {print $2}' "/proc/$pid/status" 2>/dev/null || echo 0)
        total=$((total + ${kb:-0}))
    done
    echo "$total"
}

status() {
    local n i pid kb total=0
    n=$(node_count)
    [[ $n -gt 0 ]] || {
        echo "no cluster"
        return 1
    }
    for ((i = 1; i <= n; i++)); do
        if pid=$(node_pid "$i"); then
            kb=$(rss_kb "$pid")
            total=$((total + kb))
            printf '%s\tpid %s\tRSS %d MiB\n' "$(node_name "$i")" "$pid" $((kb / 1024))
        else
            printf '%s\tdown\n' "$(node_name "$i")"
        fi
    done
    if pid=$(live_pid "$(proxy_pid_file)"); then
        kb=$(rss_kb "$pid")
        total=$((total + kb))
        printf 'proxy\tpid %s\tRSS %d MiB\t127.0.0.1:%s\n' "$pid" $((kb / 1024)) "$BASE_PORT"
    else
        printf 'proxy\tdown\n'
    fi
    printf 'total\tRSS %d MiB\n' $((total / 1024))
}

# leader_of QUEUE: the index of the node that leads quorum queue QUEUE, asked of any node that answers.
leader_of() {
    local n i leader
    n=$(node_count)
    for ((i = 1; i <= n; i++)); do
        node_pid "$i" >/dev/null || continue
        leader=$(ctl "$i" list_queues -p "$AMQP_VHOST" --no-table-headers name leader 2>/dev/null |
            awk -v q="$1" '$1 == q { print $2 }') || continue
        [[ $leader =~ ^$NODE_PREFIX-([0-9]+)@ ]] || continue
        echo "${BASH_REMATCH[1]}"
        return 0
    done
    die "no node knows a leader of queue '$1'"
}

node_index() {
    local n
    n=$(node_count)
    [[ ${1:-} =~ ^[0-9]+$ ]] && (($1 >= 1 && $1 <= n)) || die "no node '${1:-}' (the cluster has $n nodes)"
}

main() {
    local command=${1:-}
    shift || true
    case $command in
        start | stop | kill | revive | restart)
            mkdir -p "$CLUSTER_DIR"
            exec 8>"$CLUSTER_DIR.lock"
            flock -w 300 8 || die "another scripts/rabbitmq-cluster.sh holds $CLUSTER_DIR.lock"
            ;;
    esac
    case $command in
        start) start "$@" ;;
        stop) stop_all ;;
        url) amqp_url ;;
        status) status ;;
        kill)
            node_index "${1:-}"
            local pid
            pid=$(node_pid "$1") || die "node $(node_name "$1") is not running"
            kill -KILL "$pid"
            wait_until 10 bash -c "! kill -0 $pid" || die "node $(node_name "$1") (pid $pid) survived SIGKILL"
            log "killed $(node_name "$1") (pid $pid)"
            ;;
        revive)
            node_index "${1:-}"
            node_pid "$1" >/dev/null && die "node $(node_name "$1") is running"
            start_node "$1"
            wait_node "$1"
            log "$(node_name "$1") is back"
            ;;
        restart)
            node_index "${1:-}"
            local pid
            pid=$(node_pid "$1") || die "node $(node_name "$1") is not running"
            stop_pids "$pid"
            start_node "$1"
            wait_node "$1"
            # Back in the cluster: every node running again.
            ctl 1 await_online_nodes "$(node_count)" --timeout 60000 >/dev/null ||
                die "$(node_name "$1") did not rejoin the cluster"
            log "$(node_name "$1") restarted"
            ;;
        leader)
            [[ -n ${1:-} ]] || die "leader QUEUE: name a queue"
            leader_of "$1"
            ;;
        ctl)
            node_index "${1:-}"
            ctl "$@"
            ;;
        *)
            sed -n '3,/^$/s/^# \{0,1\}//p' "${BASH_SOURCE[0]}" >&2
            exit 2
            ;;
    esac
}

main "$@"
