#!/usr/bin/env bash
# Stop everything up.sh started (Ray, MLflow, PostgreSQL). --purge also deletes their data
# and the generated secrets.
set -uo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
rc=0
"$here/ray-down.sh" "$@" || rc=1
"$here/mlflow-down.sh" "$@" || rc=1
"$here/pg-down.sh" "$@" || rc=1
if [[ "${1:-}" == "--purge" ]]; then
  state=${DMFRAG_STATE_DIR:-$here/.state}
  rm -f "$state/secrets.env"          # new secrets next time (the databases are gone too)
  rmdir "$state" 2>/dev/null || true
fi
exit $rc
