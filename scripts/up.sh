#!/usr/bin/env bash
#
# Starts the whole system on this machine: PostgreSQL and RabbitMQ (installed and started if needed), the four
# services built in release mode, and nginx as the gateway on 127.0.0.1:$GATEWAY_PORT (default 8000).
# State lives in .run/: logs in .run/logs/, PIDs in .run/pids/. Running it again while the system is up and
# healthy changes nothing; after a crash it stops what is left and starts afresh. scripts/down.sh stops it all.
#
# Environment: GATEWAY_PORT (8000), GATEWAY_ACCESS_LOG=1 to log every request, and DB_POOL_SIZE, HTTP_WORKERS,
# AMQP_URL, RUST_LOG, which are passed to every service. Also:
# - REPLICAS (1 to 9, default 1): processes of every service. Replica r of a service listens on
#   8000 + 10*(r-1) + 1 (order-svc), 2 (payment-svc), 3 (stock-svc), 4 (coordinator), so replica 1 keeps the ports
#   8001-8004 and replica 2 gets 8011-8014; replica r > 1 is named <service>-r in .run/logs/ and .run/pids/. The
#   gateway spreads requests over all of them. With several replicas the services reach each other through nginx,
#   so that losing a replica loses no call: STOCK_URL, PAYMENT_URL and ORDER_URL are the gateway (its retry rules
#   are the ones clients get), COORDINATOR_URL is a coordinator front on 127.0.0.1:8005 that is not public; and
#   DB_POOL_SIZE defaults to what keeps all processes within PostgreSQL's max_connections (see db_pool_size).
# - BROKER_NODES (default 1): above 1, a RabbitMQ cluster of that many nodes started by scripts/rabbitmq-cluster.sh
#   instead of the machine's RabbitMQ, with quorum queues (AMQP_QUORUM_QUEUES=true unless set otherwise).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

SERVICES=(order-svc payment-svc stock-svc coordinator)
declare -A OFFSET=([order-svc]=1 [payment-svc]=2 [stock-svc]=3 [coordinator]=4)
declare -A DATABASE=([order-svc]=orders [payment-svc]=payment [stock-svc]=stock [coordinator]=coordinator)
GATEWAY_PORT="${GATEWAY_PORT:-8000}"
COORDINATOR_FRONT_PORT=8005
REPLICAS="${REPLICAS:-1}"
BROKER_NODES="${BROKER_NODES:-1}"
BROKER_CLUSTER=scripts/rabbitmq-cluster.sh
# Written while the system runs: what it was started with, and whether up.sh started a broker cluster.
CONFIG_FILE="$RUN_DIR/config"
CLUSTER_MARKER="$RUN_DIR/broker-cluster"
# Connections each process of a service may hold beyond its pool (migrations at start-up), and those left over for
# psql and the like.
DB_SPARE_PER_PROCESS=1
DB_SPARE=10
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
STARTUP_TIMEOUT=60

[[ $REPLICAS =~ ^[1-9]$ ]] || die "REPLICAS must be 1 to 9 (the port scheme has room for 9), not '$REPLICAS'"
[[ $BROKER_NODES =~ ^[1-9]$ ]] || die "BROKER_NODES must be 1 to 9, not '$BROKER_NODES'"

# port SERVICE REPLICA: where replica REPLICA (from 1) of SERVICE listens.
port() { echo $((8000 + 10 * ($2 - 1) + OFFSET[$1])); }
# instance SERVICE REPLICA: the replica's name in .run/logs/ and .run/pids/.
instance() { if (($2 == 1)); then echo "$1"; else echo "$1-$2"; fi; }
# servers SERVICE: nginx `server` lines for every replica of SERVICE.
servers() {
    local r ports=()
    for ((r = 1; r <= REPLICAS; r++)); do
        ports+=("$(port "$1" "$r")")
    done
    upstream_servers "${ports[@]}"
}

health_url() { echo "http://127.0.0.1:$(port "$1" "$2")/health"; }
gateway_url() { echo "http://127.0.0.1:$GATEWAY_PORT"; }

healthy() { curl -fsS -o /dev/null --max-time 2 "$1"; }

config_line() { echo "REPLICAS=$REPLICAS BROKER_NODES=$BROKER_NODES GATEWAY_PORT=$GATEWAY_PORT"; }

system_running() {
    [[ -f $CONFIG_FILE && $(<"$CONFIG_FILE") == "$(config_line)" ]] || return 1
    local svc r
    for svc in "${SERVICES[@]}"; do
        for ((r = 1; r <= REPLICAS; r++)); do
            if ! recorded_pid "$(instance "$svc" "$r")" >/dev/null || ! healthy "$(health_url "$svc" "$r")"; then
                return 1
            fi
        done
    done
    recorded_pid nginx >/dev/null && healthy "$(gateway_url)/health"
}

# stop_processes: the gateway and every process recorded (also replicas of an earlier run with more of them).
stop_processes() {
    local names
    mapfile -t names < <(recorded_names | grep -vx nginx)
    stop_recorded nginx "${names[@]}"
    rm -f "$CONFIG_FILE"
}

# stop_cluster: the broker cluster, if this script started one.
stop_cluster() {
    [[ -e $CLUSTER_MARKER ]] || return 0
    log "stopping the broker cluster"
    "$BROKER_CLUSTER" stop 9>&- || warn "$BROKER_CLUSTER stop failed"
    rm -f "$CLUSTER_MARKER"
}

stop_everything() {
    stop_processes
    stop_cluster
}

refuse_busy_ports() {
    local ports=("$GATEWAY_PORT") svc r port
    for svc in "${SERVICES[@]}"; do
        for ((r = 1; r <= REPLICAS; r++)); do
            ports+=("$(port "$svc" "$r")")
        done
    done
    if ((REPLICAS > 1)); then
        ports+=("$COORDINATOR_FRONT_PORT")
    fi
    for port in "${ports[@]}"; do
        if port_in_use "$port"; then
            die "port $port is taken by a process scripts/up.sh did not start;" \
                "stop it first (see: ss -ltnp 'sport = :$port')"
        fi
    done
}

# db_pool_size: DB_POOL_SIZE for every process when there are several replicas (with one, up.sh passes on what it
# was given, as ever): as given if all processes together stay within max_connections (less DB_SPARE), else the
# largest share that does, at most the services' default of 16.
db_pool_size() {
    local max_connections processes=$((REPLICAS * ${#SERVICES[@]})) share
    max_connections=$(pg_query -c 'SHOW max_connections') || die "cannot read PostgreSQL's max_connections"
    share=$(((max_connections - DB_SPARE) / processes - DB_SPARE_PER_PROCESS))
    if [[ -n ${DB_POOL_SIZE:-} ]]; then
        [[ $DB_POOL_SIZE =~ ^[1-9][0-9]*$ ]] || die "DB_POOL_SIZE must be a positive number, not '$DB_POOL_SIZE'"
        ((DB_POOL_SIZE <= share)) ||
            die "DB_POOL_SIZE=$DB_POOL_SIZE for $processes processes exceeds PostgreSQL's max_connections" \
                "($max_connections); at most $share each"
        echo "$DB_POOL_SIZE"
        return
    fi
    ((share >= 2)) || die "PostgreSQL's max_connections ($max_connections) is too few for $processes processes"
    echo $((share < 16 ? share : 16))
}

# start_service SERVICE REPLICA: starts one replica. With several, the services' calls to each other go through
# nginx (the gateway, and the coordinator front), which skips a dead replica.
start_service() {
    local svc=$1 r=$2 name log
    name=$(instance "$1" "$2")
    log="$RUN_DIR/logs/$name.log"
    [[ -x $BIN_DIR/$svc ]] || die "$BIN_DIR/$svc was not built"
    if [[ -f $log ]]; then
        mv -f "$log" "$log.prev"
    fi
    local -a peers
    if ((REPLICAS == 1)); then
        peers=(STOCK_URL="http://127.0.0.1:$(port stock-svc 1)" PAYMENT_URL="http://127.0.0.1:$(port payment-svc 1)"
            ORDER_URL="http://127.0.0.1:$(port order-svc 1)" COORDINATOR_URL="http://127.0.0.1:$(port coordinator 1)")
    else
        peers=(STOCK_URL="$(gateway_url)" PAYMENT_URL="$(gateway_url)" ORDER_URL="$(gateway_url)"
            COORDINATOR_URL="http://127.0.0.1:$COORDINATOR_FRONT_PORT" DB_POOL_SIZE="$POOL_SIZE")
    fi
    env HTTP_ADDR="127.0.0.1:$(port "$svc" "$r")" \
        DATABASE_URL="$PG_SERVER_URL/${DATABASE[$svc]}?sslmode=disable" \
        "${peers[@]}" \
        nohup "$BIN_DIR/$svc" >"$log" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file "$name")"
}

# start_broker_cluster: with BROKER_NODES > 1, starts the cluster and points every service at it.
start_broker_cluster() {
    [[ -x $BROKER_CLUSTER ]] || die "BROKER_NODES=$BROKER_NODES needs $BROKER_CLUSTER, which is missing"
    log "starting a RabbitMQ cluster of $BROKER_NODES nodes"
    touch "$CLUSTER_MARKER"
    "$BROKER_CLUSTER" start "$BROKER_NODES" 9>&- || die "$BROKER_CLUSTER start $BROKER_NODES failed"
    AMQP_URL=$("$BROKER_CLUSTER" url 9>&-) || die "$BROKER_CLUSTER url failed"
    [[ -n $AMQP_URL ]] || die "$BROKER_CLUSTER url printed nothing"
    export AMQP_URL
    export AMQP_QUORUM_QUEUES="${AMQP_QUORUM_QUEUES:-true}"
}

start_gateway() {
    local access_log=off front_port=""
    if [[ ${GATEWAY_ACCESS_LOG:-0} == 1 ]]; then
        access_log="\"$RUN_DIR/logs/nginx-access.log\""
    fi
    if ((REPLICAS > 1)); then
        front_port=$COORDINATOR_FRONT_PORT
    fi
    start_nginx "$RUN_DIR" "$GATEWAY_PORT" "$access_log" "$front_port" "$(servers order-svc)" \
        "$(servers payment-svc)" "$(servers stock-svc)" "$(servers coordinator)"
}

# show_failure LOG: the error a service stopped with (without the backtrace that follows it when RUST_BACKTRACE is
# set), else the end of its log.
show_failure() {
    local error_line
    error_line=$(grep -n -m 1 '^Error: ' "$1" 2>/dev/null | cut -d: -f1) || true
    if [[ -n $error_line ]]; then
        sed -n "$error_line,\$p" "$1" | sed '/^Stack backtrace:/,$d' | head -n 20
    else
        tail -n 40 "$1" 2>/dev/null || true
    fi
}

# wait_ready NAME URL LOG: waits for URL to answer 2xx; on timeout, or as soon as the process is gone, shows the
# end of LOG and fails.
wait_ready() {
    local name=$1 url=$2 log=$3 deadline=$((SECONDS + STARTUP_TIMEOUT))
    until healthy "$url" 2>/dev/null; do
        local reason=""
        # nginx writes its PID file only after it has daemonised, so a missing file is not yet a failure.
        if [[ -e $(pid_file "$name") ]] && ! recorded_pid "$name" >/dev/null; then
            reason="exited"
        fi
        ((SECONDS < deadline)) || reason="did not answer $url within $STARTUP_TIMEOUT s"
        if [[ -n $reason ]]; then
            printf 'error: %s %s; from %s:\n' "$name" "$reason" "$log" >&2
            show_failure "$log" >&2
            exit 1
        fi
        sleep 0.5
    done
}

# urls SERVICE: the base URLs of all replicas of SERVICE.
urls() {
    local r out=()
    for ((r = 1; r <= REPLICAS; r++)); do
        out+=("http://127.0.0.1:$(port "$1" "$r")")
    done
    echo "${out[*]}"
}

print_summary() {
    local broker="the machine's RabbitMQ"
    if ((BROKER_NODES > 1)); then
        broker="a cluster of $BROKER_NODES nodes ($BROKER_CLUSTER)"
    fi
    cat <<EOF

The system is up.
  gateway      $(gateway_url)   (/orders/..., /payment/..., /stock/...)
  order-svc    $(urls order-svc)
  payment-svc  $(urls payment-svc)
  stock-svc    $(urls stock-svc)
  coordinator  $(urls coordinator)
  broker       $broker
  each service also serves /health and /metrics
  logs         $RUN_DIR/logs/   (<service>.log, <service>-<replica>.log, nginx-error.log)
  PIDs         $RUN_DIR/pids/
  try          curl -X POST $(gateway_url)/stock/item/create/10
  stop         scripts/down.sh
EOF
}

main() {
    mkdir -p "$RUN_DIR/logs" "$RUN_DIR/pids" "$RUN_DIR/nginx"
    lock_run_dir
    if system_running; then
        log "already running"
        print_summary
        exit 0
    fi
    stop_processes
    # A cluster that is still wanted is kept with its queues (rabbitmq-cluster.sh start keeps a healthy one).
    if ((BROKER_NODES == 1)); then
        stop_cluster
    fi
    # Half a system is worse than none: whatever goes wrong from here stops what was started.
    trap stop_everything EXIT
    refuse_busy_ports

    ensure_command curl curl
    ensure_postgres
    if ((BROKER_NODES == 1)); then
        ensure_rabbitmq
    fi
    ensure_nginx
    if ((REPLICAS > 1)); then
        POOL_SIZE=$(db_pool_size)
        log "$REPLICAS replicas of each service, DB_POOL_SIZE=$POOL_SIZE each"
    fi

    log "building release binaries"
    cargo build --release --bins || die "cargo build --release failed"
    # Again: the build may take minutes, and something else may have taken a port meanwhile.
    refuse_busy_ports

    if ((BROKER_NODES > 1)); then
        start_broker_cluster
    fi
    local svc r name
    for svc in "${SERVICES[@]}"; do
        for ((r = 1; r <= REPLICAS; r++)); do
            log "starting $(instance "$svc" "$r") on 127.0.0.1:$(port "$svc" "$r")"
            start_service "$svc" "$r"
        done
    done
    for svc in "${SERVICES[@]}"; do
        for ((r = 1; r <= REPLICAS; r++)); do
            name=$(instance "$svc" "$r")
            wait_ready "$name" "$(health_url "$svc" "$r")" "$RUN_DIR/logs/$name.log"
        done
    done
    log "starting the gateway on 127.0.0.1:$GATEWAY_PORT"
    start_gateway
    wait_ready nginx "$(gateway_url)/health" "$RUN_DIR/logs/nginx-error.log"
    config_line >"$CONFIG_FILE"
    trap - EXIT
    print_summary
}

main "$@"
