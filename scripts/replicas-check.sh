#!/usr/bin/env bash
#
# Shows that several replicas of every service are correct together: starts REPLICAS (default 2) processes of each
# of the four services from target/release, against the local PostgreSQL and RabbitMQ, on fresh databases
# (rep_<run>_<service>) and a fresh vhost (rep_<run>), then runs the course's consistency test
# (scripts/replicas_check.py) with the checkouts spread over the order-svc replicas. Removes the processes, databases
# and vhost afterwards, and exits with the test's status.
#
# Builds the release binaries when they are missing (several minutes). Environment: BIN_DIR (target/release),
# REPLICAS (2), BASE_PORT (18100: replica r of a service listens on BASE_PORT + 10*r + 1..4), DB_POOL_SIZE (6 per
# process), KEEP=1 keeps the databases, the vhost and the logs (.run/replicas/) for inspection.
#
# GATEWAY=1 puts the gateway of scripts/up.sh in front, rendered from the same scripts/nginx.conf.template, on
# BASE_PORT (and the coordinator front on BASE_PORT + 5): the test then talks to the gateway only, and the services
# reach each other through it, as with REPLICAS=N scripts/up.sh. KILL=<service> (implies GATEWAY=1) sends SIGKILL
# to the first replica of that service once KILL_AFTER (100) checkouts have been answered, so the figures show
# what clients see when a replica dies in the middle of the burst. Nothing here collides with a system started by
# scripts/up.sh (own ports, databases and vhost).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

REPLICAS="${REPLICAS:-2}"
BASE_PORT="${BASE_PORT:-18100}"
# Eight processes share the server's connections (Debian's default max_connections is 100).
DB_POOL_SIZE="${DB_POOL_SIZE:-6}"
BIN_DIR="${BIN_DIR:-${CARGO_TARGET_DIR:-target}/release}"
SERVICES=(order-svc payment-svc stock-svc coordinator)
declare -A OFFSET=([order-svc]=1 [payment-svc]=2 [stock-svc]=3 [coordinator]=4)
declare -A DATABASE=([order-svc]=orders [payment-svc]=payment [stock-svc]=stock [coordinator]=coordinator)
KILL="${KILL:-}"
KILL_AFTER="${KILL_AFTER:-100}"
GATEWAY="${GATEWAY:-0}"
if [[ -n $KILL ]]; then
    GATEWAY=1
fi
RUN_ID="rep_$(date +%s)_$$"
VHOST="$RUN_ID"
LOG_DIR="$RUN_DIR/replicas/$RUN_ID"
GATEWAY_DIR="$LOG_DIR/gateway"
PIDS=()
KILL_PID=""

port_of() { echo $((BASE_PORT + 10 * $2 + OFFSET[$1])); }
url_of() { echo "http://127.0.0.1:$(port_of "$1" "$2")"; }
gateway_url() { echo "http://127.0.0.1:$BASE_PORT"; }
front_url() { echo "http://127.0.0.1:$((BASE_PORT + 5))"; }

# servers SERVICE: the gateway's `server` lines for the replicas of SERVICE.
servers() {
    local r ports=()
    for ((r = 0; r < REPLICAS; r++)); do
        ports+=("$(port_of "$1" "$r")")
    done
    upstream_servers "${ports[@]}"
}

# urls SERVICE: the comma-separated base URLs of all replicas of SERVICE.
urls() {
    local r out=()
    for ((r = 0; r < REPLICAS; r++)); do
        out+=("$(url_of "$1" "$r")")
    done
    local IFS=,
    echo "${out[*]}"
}

cleanup() {
    local pid
    if [[ -s $GATEWAY_DIR/pids/nginx.pid ]]; then
        kill "$(<"$GATEWAY_DIR/pids/nginx.pid")" 2>/dev/null || true
    fi
    for pid in "${PIDS[@]}"; do
        kill "$pid" 2>/dev/null || true
    done
    for pid in "${PIDS[@]}"; do
        wait "$pid" 2>/dev/null || true
    done
    if [[ ${KEEP:-0} == 1 ]]; then
        log "kept vhost $VHOST, databases ${RUN_ID}_*, logs in $LOG_DIR"
        return
    fi
    local svc
    for svc in "${SERVICES[@]}"; do
        pg_query -c "DROP DATABASE IF EXISTS ${RUN_ID}_${DATABASE[$svc]} WITH (FORCE)" >/dev/null 2>&1 || true
    done
    rabbitmqctl -q delete_vhost "$VHOST" >/dev/null 2>&1 || true
    rm -rf "$LOG_DIR"
}

start_replica() {
    local svc=$1 r=$2 log="$LOG_DIR/$1-$2.log"
    local -a peers
    if [[ $GATEWAY == 1 ]]; then
        # As scripts/up.sh wires several replicas: through nginx, which skips a dead one.
        peers=(STOCK_URL="$(gateway_url)" PAYMENT_URL="$(gateway_url)" ORDER_URL="$(gateway_url)"
            COORDINATOR_URL="$(front_url)")
    else
        # Replicas of order-svc read prices from different stock-svc replicas, so both stock replicas serve traffic.
        peers=(STOCK_URL="$(url_of stock-svc $((r % REPLICAS)))" PAYMENT_URL="$(url_of payment-svc $((r % REPLICAS)))"
            ORDER_URL="$(url_of order-svc $((r % REPLICAS)))" COORDINATOR_URL="$(url_of coordinator $((r % REPLICAS)))")
    fi
    env HTTP_ADDR="127.0.0.1:$(port_of "$svc" "$r")" \
        DATABASE_URL="$PG_SERVER_URL/${RUN_ID}_${DATABASE[$svc]}" \
        AMQP_URL="amqp://guest:guest@127.0.0.1:5672/$VHOST" \
        "${peers[@]}" \
        DB_POOL_SIZE="$DB_POOL_SIZE" \
        RUST_LOG="${RUST_LOG:-warn}" RUST_BACKTRACE=0 \
        "$BIN_DIR/$svc" >"$log" 2>&1 </dev/null &
    PIDS+=($!)
    if [[ $svc == "$KILL" && $r == 0 ]]; then
        KILL_PID=$!
        # Its death is expected: no "Killed" notice from the shell.
        disown "$KILL_PID"
    fi
}

main() {
    ensure_postgres
    ensure_rabbitmq
    ensure_command python3 python3
    if [[ -n $KILL && ! -v OFFSET[$KILL] ]]; then
        die "KILL must name a service (${SERVICES[*]}), not '$KILL'"
    fi
    if [[ $GATEWAY == 1 ]]; then
        ensure_nginx
    fi
    local svc r port
    for svc in "${SERVICES[@]}"; do
        if [[ ! -x $BIN_DIR/$svc ]]; then
            log "building release binaries (takes several minutes)"
            cargo build --release --bins || die "cargo build --release failed"
            break
        fi
    done
    for svc in "${SERVICES[@]}"; do
        for ((r = 0; r < REPLICAS; r++)); do
            port_in_use "$(port_of "$svc" "$r")" && die "port $(port_of "$svc" "$r") is taken; set BASE_PORT"
        done
    done
    if [[ $GATEWAY == 1 ]]; then
        for port in "$BASE_PORT" $((BASE_PORT + 5)); do
            port_in_use "$port" && die "port $port is taken; set BASE_PORT"
        done
    fi

    mkdir -p "$LOG_DIR"
    trap cleanup EXIT
    rabbitmqctl -q add_vhost "$VHOST" >/dev/null || die "rabbitmqctl add_vhost $VHOST failed"
    rabbitmqctl -q set_permissions -p "$VHOST" guest '.*' '.*' '.*' >/dev/null || die "rabbitmqctl set_permissions failed"

    # All replicas start at once: the databases are created and migrated under an advisory lock, which this checks.
    log "starting $REPLICAS replicas of each service (ports from $BASE_PORT, vhost $VHOST)"
    for svc in "${SERVICES[@]}"; do
        for ((r = 0; r < REPLICAS; r++)); do
            start_replica "$svc" "$r"
        done
    done
    for svc in "${SERVICES[@]}"; do
        for ((r = 0; r < REPLICAS; r++)); do
            if ! wait_until 60 curl -fsS -o /dev/null --max-time 2 "$(url_of "$svc" "$r")/health"; then
                grep -v "^ " "$LOG_DIR/$svc-$r.log" | tail -n 20 >&2 || true
                die "$svc replica $r did not become healthy"
            fi
        done
    done

    if [[ $GATEWAY == 0 ]]; then
        log "running the consistency test over HTTP"
        python3 scripts/replicas_check.py --order "$(urls order-svc)" --stock "$(urls stock-svc)" \
            --payment "$(urls payment-svc)"
        return
    fi
    start_nginx "$GATEWAY_DIR" "$BASE_PORT" off "$((BASE_PORT + 5))" "$(servers order-svc)" \
        "$(servers payment-svc)" "$(servers stock-svc)" "$(servers coordinator)"
    wait_http "$(gateway_url)/health" 10 || die "the gateway did not answer on $(gateway_url)"
    local kill=()
    if [[ -n $KILL ]]; then
        kill=(--kill "$KILL_PID" --kill-after "$KILL_AFTER")
        log "running the consistency test through the gateway; $KILL replica 0 (pid $KILL_PID) dies mid-burst"
    else
        log "running the consistency test through the gateway"
    fi
    python3 scripts/replicas_check.py --order "$(gateway_url)" --stock "$(gateway_url)" \
        --payment "$(gateway_url)" "${kill[@]}"
}

main "$@"
