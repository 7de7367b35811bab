#!/usr/bin/env bash
# Start everything on this machine, loopback only: PostgreSQL, the MLflow tracking server
# (PostgreSQL backend, basic-auth) and a Ray cluster (head + 2 worker nodes, token auth).
# Then prints the environment a sweep needs.
set -euo pipefail
here=$(dirname "${BASH_SOURCE[0]}")
"$here/pg-up.sh"
"$here/mlflow-up.sh"
"$here/ray-up.sh"
echo
"$here/env.sh"
echo '# then, e.g.:  .venv/bin/python -m sweeps +sweep=smoke'
