#!/usr/bin/env bash
# Stop the MLflow server started by mlflow-up.sh (its whole process group). --purge also
# deletes its artifacts and runtime files (the runs are in PostgreSQL: pg-down.sh --purge).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
D=$STATE/mlflow
if [[ -f "$D/server.pid" ]]; then
  pid=$(cat "$D/server.pid")
  if kill -0 "$pid" 2>/dev/null; then
    kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
    for _ in $(seq 1 40); do kill -0 -- "-$pid" 2>/dev/null || break; sleep 0.25; done
    kill -KILL -- "-$pid" 2>/dev/null || true
    log "MLflow server stopped"
  fi
  rm -f "$D/server.pid"
else
  log "MLflow server not running"
fi
if [[ "${1:-}" == "--purge" ]]; then rm -rf "$D"; log "removed $D"; fi
