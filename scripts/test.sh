#!/usr/bin/env bash
#
# The one test command: makes sure PostgreSQL and RabbitMQ run and Chromium with chromedriver and nginx with its
# stream module (the gateway and the broker cluster's proxy of the HA test) are installed,
# removes the test databases and vhosts earlier runs left behind, builds everything, runs the whole suite
# (cargo-nextest when installed, else cargo test) and removes what this run left. Exits with the suite's status.
#
# Environment: LINT=1 also runs `cargo fmt --check` and clippy (with -D warnings) first; RUST_LOG (default warn).

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

# A test database or vhost with a connection opened in the last 10 minutes belongs to a test running right now
# (another terminal, another `cargo test -p`) and is kept. Older connections are from killed runs whose spawned
# services were orphaned; nextest ends any test after 5 minutes.
LEFTOVER_AGE_SECONDS=600

drop_leftover_databases() {
    local server="${TEST_POSTGRES_URL:-$PG_SERVER_URL}" leftovers
    local select="
        SELECT format('DROP DATABASE %I WITH (FORCE)', d.datname)
        FROM pg_database d
        WHERE d.datname LIKE 't\\_%'
          AND NOT EXISTS (
              SELECT 1 FROM pg_stat_activity a
              WHERE a.datname = d.datname
                AND a.backend_start > now() - make_interval(secs => $LEFTOVER_AGE_SECONDS))"
    leftovers=$(psql "$server/postgres" -X -q -A -t -v ON_ERROR_STOP=1 -c "$select") ||
        die "cannot list leftover test databases on $server"
    [[ -n $leftovers ]] || return 0
    log "dropping $(wc -l <<<"$leftovers") leftover test databases"
    # \gexec runs each DROP on its own, outside a transaction block, as DROP DATABASE requires.
    printf '%s\n\\gexec\n' "$select" | psql "$server/postgres" -X -q -v ON_ERROR_STOP=1 >/dev/null ||
        die "dropping leftover test databases failed"
}

delete_leftover_vhosts() {
    local in_use vhosts vhost leftovers=()
    in_use=$(rabbitmqctl -s list_connections vhost connected_at </dev/null |
        awk -F'\t' -v since="$(($(date +%s) - LEFTOVER_AGE_SECONDS))" '$2 / 1000 > since { print $1 }') ||
        die "cannot list RabbitMQ connections"
    mapfile -t vhosts < <(rabbitmqctl -s list_vhosts name </dev/null | grep '^t_')
    for vhost in "${vhosts[@]}"; do
        if ! grep -qxF -- "$vhost" <<<"$in_use"; then
            leftovers+=("$vhost")
        fi
    done
    ((${#leftovers[@]} > 0)) || return 0
    log "deleting ${#leftovers[@]} leftover test vhosts"
    # Deleting a vhost takes the broker about a second; several at a time overlap that wait.
    printf '%s\n' "${leftovers[@]}" | xargs -P 4 -I {} rabbitmqctl -q delete_vhost {} >/dev/null ||
        die "deleting leftover test vhosts failed"
}

lint() {
    log "cargo fmt --check"
    cargo fmt --all --check
    log "cargo clippy"
    cargo clippy --workspace --all-targets -- -D warnings
}

run_suite() {
    if cargo nextest --version >/dev/null 2>&1; then
        local status=0 doc_status=0
        cargo nextest run --workspace --no-fail-fast || status=$?
        # nextest does not run doctests.
        cargo test --workspace --doc || doc_status=$?
        return $((status != 0 ? status : doc_status))
    fi
    cargo test --workspace --no-fail-fast
}

main() {
    ensure_postgres
    ensure_rabbitmq
    ensure_chromium
    nginx_stream_module >/dev/null
    if [[ ${LINT:-0} == 1 ]]; then
        lint
    fi
    drop_leftover_databases
    delete_leftover_vhosts
    # The image-context build shares the suite's target directory: it compiles the same dependencies, which the
    # suite's build below then reuses instead of compiling them a second time (the workspace's own crates are built
    # apart, from their two source trees, and the suite's binaries, built last, are the ones the tests run).
    CONTEXT_TARGET_DIR="${CONTEXT_TARGET_DIR:-$PWD/target}" scripts/check-deploy.sh

    log "building"
    cargo build --workspace --all-targets
    export RUST_LOG="${RUST_LOG:-warn}"
    # Each test starts up to four services, each with its own pool, and several tests run at once: small pools
    # keep the suite under PostgreSQL's default max_connections (100).
    export DB_POOL_SIZE="${DB_POOL_SIZE:-4}"
    log "running the test suite"
    local status=0
    run_suite || status=$?
    # Every test makes a database and a vhost and leaves them behind. Left to pile up, they cost more than disk:
    # the autovacuum launcher visits each database in turn, which skews a benchmark run afterwards. A failed
    # clean-up does not change the suite's verdict; the next run tries again.
    log "removing this run's test databases and vhosts"
    (drop_leftover_databases && delete_leftover_vhosts) || log "clean-up failed; the next run retries it"
    if ((status == 0)); then
        log "all tests passed"
    else
        log "tests failed (exit $status)"
    fi
    exit "$status"
}

main "$@"
