#!/usr/bin/env bash
#
# Starts the whole system on this machine: PostgreSQL and RabbitMQ (installed and started if needed), the four
# services built in release mode, and nginx as the gateway on 127.0.0.1:$GATEWAY_PORT (default 8000).
# State lives in .run/: logs in .run/logs/, PIDs in .run/pids/. Running it again while the system is up and
# healthy changes nothing; after a crash it stops what is left and starts afresh. scripts/down.sh stops it all.
#
# Environment: GATEWAY_PORT (8000), GATEWAY_ACCESS_LOG=1 to log every request, and DB_POOL_SIZE, HTTP_WORKERS,
# AMQP_URL, RUST_LOG, which are passed to every service.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

SERVICES=(order-svc payment-svc stock-svc coordinator)
declare -A PORT=([order-svc]=8001 [payment-svc]=8002 [stock-svc]=8003 [coordinator]=8004)
declare -A DATABASE=([order-svc]=orders [payment-svc]=payment [stock-svc]=stock [coordinator]=coordinator)
GATEWAY_PORT="${GATEWAY_PORT:-8000}"
BIN_DIR="${CARGO_TARGET_DIR:-target}/release"
STARTUP_TIMEOUT=60

health_url() { echo "http://127.0.0.1:${PORT[$1]}/health"; }
gateway_url() { echo "http://127.0.0.1:$GATEWAY_PORT"; }

healthy() { curl -fsS -o /dev/null --max-time 2 "$1"; }

system_running() {
    local svc
    for svc in "${SERVICES[@]}"; do
        if ! recorded_pid "$svc" >/dev/null || ! healthy "$(health_url "$svc")"; then
            return 1
        fi
    done
    recorded_pid nginx >/dev/null && healthy "$(gateway_url)/health"
}

stop_everything() { stop_recorded nginx "${SERVICES[@]}"; }

refuse_busy_ports() {
    local port
    for port in "${PORT[@]}" "$GATEWAY_PORT"; do
        if port_in_use "$port"; then
            die "port $port is taken by a process scripts/up.sh did not start;" \
                "stop it first (see: ss -ltnp 'sport = :$port')"
        fi
    done
}

start_service() {
    local svc=$1 log="$RUN_DIR/logs/$1.log"
    [[ -x $BIN_DIR/$svc ]] || die "$BIN_DIR/$svc was not built"
    if [[ -f $log ]]; then
        mv -f "$log" "$log.prev"
    fi
    HTTP_ADDR="127.0.0.1:${PORT[$svc]}" \
        DATABASE_URL="$PG_SERVER_URL/${DATABASE[$svc]}?sslmode=disable" \
        STOCK_URL="http://127.0.0.1:${PORT[stock-svc]}" \
        PAYMENT_URL="http://127.0.0.1:${PORT[payment-svc]}" \
        ORDER_URL="http://127.0.0.1:${PORT[order-svc]}" \
        COORDINATOR_URL="http://127.0.0.1:${PORT[coordinator]}" \
        nohup "$BIN_DIR/$svc" >"$log" 2>&1 </dev/null 9>&- &
    echo $! >"$(pid_file "$svc")"
}

start_gateway() {
    local template conf="$RUN_DIR/nginx.conf" access_log=off
    if [[ ${GATEWAY_ACCESS_LOG:-0} == 1 ]]; then
        access_log="\"$RUN_DIR/logs/nginx-access.log\""
    fi
    template=$(<scripts/nginx.conf.template)
    template=${template//@RUN_DIR@/"$RUN_DIR"}
    template=${template//@GATEWAY_PORT@/"$GATEWAY_PORT"}
    template=${template//@ACCESS_LOG@/"$access_log"}
    printf '%s\n' "$template" >"$conf"
    local nginx
    nginx=$(nginx_bin)
    # -e: the error log to use before the configuration is read (the built-in one may not be writable).
    "$nginx" -q -t -p "$RUN_DIR/nginx/" -e "$RUN_DIR/logs/nginx-error.log" -c "$conf" ||
        die "the generated $conf is invalid"
    "$nginx" -p "$RUN_DIR/nginx/" -e "$RUN_DIR/logs/nginx-error.log" -c "$conf" 9>&- ||
        die "nginx failed to start (see $RUN_DIR/logs/nginx-error.log)"
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

print_summary() {
    cat <<EOF

The system is up.
  gateway      $(gateway_url)   (/orders/..., /payment/..., /stock/...)
  order-svc    http://127.0.0.1:${PORT[order-svc]}
  payment-svc  http://127.0.0.1:${PORT[payment-svc]}
  stock-svc    http://127.0.0.1:${PORT[stock-svc]}
  coordinator  http://127.0.0.1:${PORT[coordinator]}
  each service also serves /health and /metrics
  logs         $RUN_DIR/logs/   (<service>.log, nginx-error.log)
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
    stop_everything
    # Half a system is worse than none: whatever goes wrong from here stops what was started.
    trap stop_everything EXIT
    refuse_busy_ports

    ensure_command curl curl
    ensure_postgres
    ensure_rabbitmq
    ensure_nginx

    log "building release binaries"
    cargo build --release --bins || die "cargo build --release failed"

    local svc
    for svc in "${SERVICES[@]}"; do
        log "starting $svc on 127.0.0.1:${PORT[$svc]}"
        start_service "$svc"
    done
    for svc in "${SERVICES[@]}"; do
        wait_ready "$svc" "$(health_url "$svc")" "$RUN_DIR/logs/$svc.log"
    done
    log "starting the gateway on 127.0.0.1:$GATEWAY_PORT"
    start_gateway
    wait_ready nginx "$(gateway_url)/health" "$RUN_DIR/logs/nginx-error.log"
    trap - EXIT
    print_summary
}

main "$@"
