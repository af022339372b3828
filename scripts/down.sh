#!/usr/bin/env bash
#
# Stops what scripts/up.sh started (the gateway first, then the services), by the PIDs recorded in .run/pids/:
# SIGTERM, then SIGKILL after 10 s. Databases, queues and logs are kept; PostgreSQL and RabbitMQ keep running.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

lock_run_dir
NAMES=(nginx order-svc payment-svc stock-svc coordinator)
stopped_any=0
for name in "${NAMES[@]}"; do
    if recorded_pid "$name" >/dev/null; then
        stopped_any=1
    fi
done
stop_recorded "${NAMES[@]}"
if [[ $stopped_any -eq 0 ]]; then
    log "nothing was running"
else
    log "stopped; logs are kept in $RUN_DIR/logs/"
fi
