#!/usr/bin/env bash
#
# The benchmark: builds `loadgen`, starts the system with scripts/up.sh (skip with NO_UP=1), measures a reference
# figure for the machine's PostgreSQL (pgbench simple-update), then runs the course's stress test three times on a
# freshly initialised data set each time (a single client on the otherwise idle system, a closed loop of CLIENTS
# clients, an open loop at RATE checkouts/s), and finally checks stock and credit conservation over all entities.
# Each run also reports the CPU of every process over its measured window (and so the CPU per fresh checkout of
# everything but the load generator) and the services' resident memory. Prints a summary and writes everything into
# .run/bench/<timestamp>.json (the per-phase loadgen results stay in .run/bench/<timestamp>/).
# Exits 1 when the conservation check fails.
#
# Environment: CLIENTS (512), DURATION seconds per run (30), RATE checkouts/s (500), WARMUP seconds (5),
# IDLE_DURATION seconds of the single-client run (10), NO_UP=1, GATEWAY_PORT (8000). The data set is the course's:
# 100,000 items, users and orders.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CLIENTS="${CLIENTS:-512}"
DURATION="${DURATION:-30}"
RATE="${RATE:-500}"
WARMUP="${WARMUP:-5}"
IDLE_DURATION="${IDLE_DURATION:-10}"
GATEWAY_URL="http://127.0.0.1:${GATEWAY_PORT:-8000}"
PGBENCH_DATABASE=pgbench_ref
PGBENCH_SCALE=10
LOADGEN="${CARGO_TARGET_DIR:-target}/release/loadgen"

STAMP=$(date -u +%Y%m%dT%H%M%SZ)
WORK_DIR="$RUN_DIR/bench/$STAMP"
RESULT="$RUN_DIR/bench/$STAMP.json"

# pgbench_tps: the reference figure. pgbench's simple-update (-N) transaction is a few single-row updates and
# an insert, the closest standard workload to one participant's step of a checkout; its TPS on the same server
# says what this machine's PostgreSQL can do at all, so checkouts/s can be read relative to it.
pgbench_tps() {
    local url="$PG_SERVER_URL/$PGBENCH_DATABASE" initialised
    if [[ -z $(pg_query -c "SELECT 1 FROM pg_database WHERE datname = '$PGBENCH_DATABASE'") ]]; then
        pg_query -c "CREATE DATABASE $PGBENCH_DATABASE" || die "cannot create database $PGBENCH_DATABASE"
    fi
    initialised=$(psql "$url" -X -q -A -t -c "SELECT to_regclass('pgbench_branches') IS NOT NULL") ||
        die "cannot reach database $PGBENCH_DATABASE"
    if [[ $initialised != t ]]; then
        log "initialising pgbench (scale $PGBENCH_SCALE) in $PGBENCH_DATABASE, once"
        pgbench -i -q -s "$PGBENCH_SCALE" "$url" >"$WORK_DIR/pgbench-init.txt" 2>&1 ||
            die "pgbench -i failed (see $WORK_DIR/pgbench-init.txt)"
    fi
    log "pgbench simple-update, 8 clients, 10 s"
    pgbench -N -c 8 -j 2 -T 10 "$url" >"$WORK_DIR/pgbench.txt" 2>&1 || die "pgbench failed (see $WORK_DIR/pgbench.txt)"
    grep -oE '^tps = [0-9.]+' "$WORK_DIR/pgbench.txt" | head -n 1 | cut -d' ' -f3
}

# loadgen NAME ARGS...: one loadgen invocation whose JSON goes to $WORK_DIR/NAME.json; returns loadgen's status.
loadgen() {
    local name=$1
    shift
    "$LOADGEN" --url "$GATEWAY_URL" --out "$WORK_DIR/$name.json" "$@"
}

fresh_per_s() { jq -r '.load.fresh_checkouts_per_s * 10 | round / 10' "$WORK_DIR/$1.json"; }

main() {
    ensure_command jq jq
    ensure_command pgbench postgresql-contrib
    mkdir -p "$WORK_DIR"

    log "building loadgen"
    cargo build --release -p bench || die "cargo build -p bench failed"
    if [[ ${NO_UP:-0} != 1 ]]; then
        scripts/up.sh >/dev/null
    fi
    curl -fsS -o /dev/null --max-time 5 "$GATEWAY_URL/health" || die "the gateway at $GATEWAY_URL is not answering"

    local tps
    tps=$(pgbench_tps)
    [[ -n $tps ]] || die "no tps in pgbench's output (see $WORK_DIR/pgbench.txt)"

    # Every run starts from a fresh data set: an order paid by an earlier run would otherwise be counted as a fresh
    # checkout while costing the system almost nothing.
    log "single client on the idle system, $IDLE_DURATION s"
    loadgen idle --init --clients 1 --duration "$IDLE_DURATION" --warmup 2
    log "closed loop: $CLIENTS clients, $DURATION s"
    loadgen closed --init --clients "$CLIENTS" --duration "$DURATION" --warmup "$WARMUP"
    log "open loop: $RATE checkouts/s, $DURATION s"
    loadgen rate --init --mode rate --rate "$RATE" --duration "$DURATION" --warmup "$WARMUP"
    log "conservation check"
    local check_status=0
    loadgen check --duration 0 --check || check_status=$?
    if [[ $check_status -gt 1 ]]; then
        die "the conservation check could not run (exit $check_status)"
    fi

    jq -n --arg stamp "$STAMP" --argjson tps "$tps" \
        --slurpfile idle "$WORK_DIR/idle.json" --slurpfile closed "$WORK_DIR/closed.json" \
        --slurpfile rate "$WORK_DIR/rate.json" \
        --slurpfile check "$WORK_DIR/check.json" '{
            timestamp: $stamp,
            machine: $closed[0].machine,
            pgbench: {workload: "simple-update (-N)", scale: '"$PGBENCH_SCALE"', clients: 8, threads: 2, seconds: 10,
                      tps: $tps},
            idle: $idle[0],
            closed: $closed[0],
            rate: $rate[0],
            check: $check[0].check,
            fresh_checkouts_per_pgbench_tps: {
                closed: ($closed[0].load.fresh_checkouts_per_s / $tps),
                rate: ($rate[0].load.fresh_checkouts_per_s / $tps)
            }
        }' >"$RESULT"

    local closed rate cpu rss
    closed=$(fresh_per_s closed)
    rate=$(fresh_per_s rate)
    # CPU per fresh checkout of everything but loadgen, and that CPU as a share of the machine.
    cpu='def cpu($run): $run.load.usage | if . == null then "?" else
             "\(.system_cpu_ms_per_fresh_checkout * 1000 | round / 1000) ms (\(.system_share_of_machine_percent | round)% of the machine)" end;
         "closed \(cpu(.closed)), open loop \(cpu(.rate))"'
    rss='[.closed.load.usage, .rate.load.usage | select(. != null) | .service_rss_mib | to_entries[]]
         | group_by(.key) | map("\(.[0].key) \(map(.value) | max | round)") | join(", ")'
    cat <<EOF

Benchmark $STAMP ($(nproc) CPUs)
  pgbench simple-update     $(printf "%.0f" "$tps") tps
  closed, $CLIENTS clients      $closed fresh checkouts/s   (ratio to pgbench $(jq -r '.fresh_checkouts_per_pgbench_tps.closed * 1000 | round / 1000' "$RESULT"))
  open loop, $RATE/s        $rate fresh checkouts/s   (ratio to pgbench $(jq -r '.fresh_checkouts_per_pgbench_tps.rate * 1000 | round / 1000' "$RESULT"))
  latency p50/p99 ms        closed $(jq -r '.closed.load.latency | "\(.p50_ms)/\(.p99_ms)"' "$RESULT"), open loop $(jq -r '.rate.load.latency | "\(.p50_ms)/\(.p99_ms)"' "$RESULT")
  single client, idle       p50/p99 $(jq -r '.idle.load.latency | "\(.p50_ms)/\(.p99_ms)"' "$RESULT") ms
  CPU per fresh checkout    $(jq -r "$cpu" "$RESULT")
  resident memory MiB       $(jq -r "$rss" "$RESULT")
  conservation check        $(jq -r 'if .check.passed then "PASS" else "FAIL" end' "$RESULT")
  result                    $RESULT
EOF
    return "$check_status"
}

main "$@"
