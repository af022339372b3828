#!/usr/bin/env bash
#
# Stops what scripts/up.sh started (the gateway first, then every replica of the services, then the broker cluster
# if BROKER_NODES started one), by the PIDs recorded in .run/pids/: SIGTERM, then SIGKILL after 10 s. Databases,
# queues and logs are kept; the machine's PostgreSQL and RabbitMQ keep running.

set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")/.."
# shellcheck source=scripts/lib.sh
source scripts/lib.sh

CLUSTER_MARKER="$RUN_DIR/broker-cluster"
BROKER_CLUSTER=scripts/rabbitmq-cluster.sh

lock_run_dir
mapfile -t names < <(recorded_names | grep -vx nginx)
stopped_any=0
for name in nginx "${names[@]}"; do
    if recorded_pid "$name" >/dev/null; then
        stopped_any=1
    fi
done
# The gateway first, so that no request reaches a replica that is stopping.
stop_recorded nginx
stop_recorded "${names[@]}"
if [[ -e $CLUSTER_MARKER ]]; then
    stopped_any=1
    log "stopping the broker cluster"
    "$BROKER_CLUSTER" stop 9>&- || die "$BROKER_CLUSTER stop failed; $CLUSTER_MARKER is kept so that down.sh tries again"
    rm -f "$CLUSTER_MARKER"
fi
rm -f "$RUN_DIR/config"
if [[ $stopped_any -eq 0 ]]; then
    log "nothing was running"
else
    log "stopped; logs are kept in $RUN_DIR/logs/"
fi
