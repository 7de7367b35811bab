#!/usr/bin/env bash
# Start `mlflow server` on 127.0.0.1:$MLFLOW_PORT (default 5000) via infra/mlflow/start-server.sh,
# backed by the PostgreSQL of pg-up.sh, artifacts in $DMFRAG_STATE_DIR/mlflow/artifacts,
# basic-auth on (admin password from the environment or .state/secrets.env).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
load_secrets
D=$STATE/mlflow
mkdir -p "$D"
if [[ -f "$D/server.pid" ]] && kill -0 "$(cat "$D/server.pid")" 2>/dev/null; then
  log "MLflow server already running (pid $(cat "$D/server.pid"))"; exit 0
fi
export MLFLOW_HOST=$HOST MLFLOW_PORT MLFLOW_DB_HOST=$HOST MLFLOW_DB_PORT=$PG_PORT
export MLFLOW_ARTIFACTS=${MLFLOW_ARTIFACTS:-file://$D/artifacts}
# one local user: cache verified credentials for 60 s (MLflow re-hashes the password on every
# request otherwise, which bounds a sweep's recording rate); set 0 to turn it off
export MLFLOW_AUTH_CACHE_TTL_SECONDS=${MLFLOW_AUTH_CACHE_TTL_SECONDS:-60}
export MLFLOW_AUTH=${MLFLOW_AUTH:-basic} MLFLOW_STATE_DIR=$D MLFLOW_BIN=${MLFLOW_BIN:-$BIN/mlflow}
export PATH="$BIN:$PATH"
# own session (process group = pid) so mlflow-down.sh stops the server and all its workers
setsid "$REPO/infra/mlflow/start-server.sh" >>"$D/server.log" 2>&1 < /dev/null &
echo $! > "$D/server.pid"
if ! wait_http "http://$HOST:$MLFLOW_PORT/health" "${DMFRAG_MLFLOW_START_TIMEOUT:-120}" "$(cat "$D/server.pid")"; then
  log "MLflow server did not come up; log: $D/server.log"; tail -n 30 "$D/server.log" >&2; exit 1
fi
log "MLflow server on http://$HOST:$MLFLOW_PORT (pid $(cat "$D/server.pid"), log $D/server.log)"
