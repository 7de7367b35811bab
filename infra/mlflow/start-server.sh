#!/usr/bin/env bash
# Start an MLflow tracking server with a PostgreSQL backend store, an artifact store and
# (by default) MLflow's basic-auth app. Configuration from the environment only; nothing secret
# is read from a committed file, passed on the command line, or written anywhere but a
# private (0600) runtime file.
#
#   MLFLOW_HOST            bind address                    (default 127.0.0.1: loopback only)
#   MLFLOW_PORT            port                            (default 5000)
#   MLFLOW_DB_USER         PostgreSQL role                 (required)
#   MLFLOW_DB_PASSWORD     its password                    (required; handed to libpq as PGPASSWORD)
#   MLFLOW_DB_HOST / MLFLOW_DB_PORT / MLFLOW_DB_NAME       (127.0.0.1 / 5432 / mlflow)
#   MLFLOW_DB_SSLMODE      libpq sslmode, e.g. require      (default: libpq's default, prefer)
#   MLFLOW_ARTIFACTS       --artifacts-destination: s3://bucket/prefix (set MLFLOW_S3_ENDPOINT_URL,
#                          AWS_ACCESS_KEY_ID, AWS_SECRET_ACCESS_KEY for MinIO) or file:///shared/path
#                          (default file://$MLFLOW_STATE_DIR/artifacts)
#   MLFLOW_AUTH            basic (default) or none
#   MLFLOW_AUTH_DB_NAME    database of the auth app's users/permissions (default mlflow_auth)
#   MLFLOW_AUTH_ADMIN_USER / MLFLOW_AUTH_ADMIN_PASSWORD   admin created on first start (password required)
#   MLFLOW_AUTH_DEFAULT_PERMISSION   what every authenticated user may do (default READ)
#   MLFLOW_AUTH_CACHE_TTL_SECONDS    cache verified credentials this long per server worker (default 0:
#                          MLflow's default, every request re-hashes the password; > 0 is much
#                          faster, but a changed/deleted password may still work that long)
#   MLFLOW_FLASK_SERVER_SECRET_KEY   CSRF secret of the auth app (default: random per start)
#   MLFLOW_WORKERS         server worker processes (default 2)
#   MLFLOW_HTTP_SERVER     gunicorn (default) or uvicorn (MLflow's default). Under uvicorn every request
#                          on a kept-alive connection stalled ~40 ms here (Nagle + delayed ACK; gunicorn
#                          sets TCP_NODELAY): 12 ms vs 60 ms per authenticated GET
#   MLFLOW_THREADS         gunicorn threads per worker (default 4)
#   MLFLOW_SERVER_ENABLE_JOB_EXECUTION   MLflow's background job runner (GenAI jobs; 7 huey consumers
#                          polling, ~0.7 of a core when idle): false (default) or true
#   MLFLOW_STATE_DIR       runtime files (default ${XDG_RUNTIME_DIR:-/tmp}/dmfrag-mlflow-$UID)
#   MLFLOW_BIN             the mlflow executable (default: mlflow on PATH)
# Clients: MLFLOW_TRACKING_URI=http://host:port MLFLOW_TRACKING_USERNAME=... MLFLOW_TRACKING_PASSWORD=...
set -euo pipefail
umask 077

: "${MLFLOW_DB_USER:?set MLFLOW_DB_USER}"
: "${MLFLOW_DB_PASSWORD:?set MLFLOW_DB_PASSWORD}"
HOST=${MLFLOW_HOST:-127.0.0.1}
PORT=${MLFLOW_PORT:-5000}
DB_HOST=${MLFLOW_DB_HOST:-127.0.0.1}
DB_PORT=${MLFLOW_DB_PORT:-5432}
DB_NAME=${MLFLOW_DB_NAME:-mlflow}
STATE_DIR=${MLFLOW_STATE_DIR:-${XDG_RUNTIME_DIR:-/tmp}/dmfrag-mlflow-$(id -u)}
ARTIFACTS=${MLFLOW_ARTIFACTS:-file://$STATE_DIR/artifacts}
AUTH=${MLFLOW_AUTH:-basic}
MLFLOW=${MLFLOW_BIN:-mlflow}
mkdir -p "$STATE_DIR"
chmod 700 "$STATE_DIR"

urlenc() { python3 -c 'import sys, urllib.parse; print(urllib.parse.quote(sys.argv[1], safe=""))' "$1"; }
q=""
[[ -n "${MLFLOW_DB_SSLMODE:-}" ]] && q="?sslmode=${MLFLOW_DB_SSLMODE}"
# No password in the URI: psycopg2/libpq reads PGPASSWORD, so the password is neither in argv
# (visible in `ps`) nor in any URI MLflow might print.
export PGPASSWORD="$MLFLOW_DB_PASSWORD"
BACKEND="postgresql+psycopg2://$(urlenc "$MLFLOW_DB_USER")@${DB_HOST}:${DB_PORT}/${DB_NAME}${q}"

args=(server --host "$HOST" --port "$PORT" --backend-store-uri "$BACKEND"
      --artifacts-destination "$ARTIFACTS" --serve-artifacts --workers "${MLFLOW_WORKERS:-2}")
export MLFLOW_SERVER_ENABLE_JOB_EXECUTION=${MLFLOW_SERVER_ENABLE_JOB_EXECUTION:-false}
case "${MLFLOW_HTTP_SERVER:-gunicorn}" in
  gunicorn) args+=(--gunicorn-opts "--threads ${MLFLOW_THREADS:-4} --timeout 120") ;;
  uvicorn) ;;
  *) echo "start-server.sh: MLFLOW_HTTP_SERVER must be gunicorn or uvicorn" >&2; exit 2 ;;
esac

case "$AUTH" in
  basic)
    : "${MLFLOW_AUTH_ADMIN_PASSWORD:?set MLFLOW_AUTH_ADMIN_PASSWORD (or MLFLOW_AUTH=none)}"
    export MLFLOW_AUTH_ADMIN_USERNAME=${MLFLOW_AUTH_ADMIN_USER:-admin}
    export MLFLOW_AUTH_ADMIN_PASSWORD  # read by mlflow.server.auth, never written to the ini
    if [[ -z "${MLFLOW_FLASK_SERVER_SECRET_KEY:-}" ]]; then
      MLFLOW_FLASK_SERVER_SECRET_KEY=$(python3 -c 'import secrets; print(secrets.token_hex(32))')
    fi
    export MLFLOW_FLASK_SERVER_SECRET_KEY
    # generated at every start; holds no secret (the database password is PGPASSWORD)
    ini="$STATE_DIR/basic_auth.ini"
    cat > "$ini" <<INI
[mlflow]
default_permission = ${MLFLOW_AUTH_DEFAULT_PERMISSION:-READ}
database_uri = postgresql+psycopg2://$(urlenc "$MLFLOW_DB_USER")@${DB_HOST}:${DB_PORT}/${MLFLOW_AUTH_DB_NAME:-mlflow_auth}${q}
admin_username = ${MLFLOW_AUTH_ADMIN_USERNAME}
authorization_function = mlflow.server.auth:authenticate_request_basic_auth
auth_cache_ttl_seconds = ${MLFLOW_AUTH_CACHE_TTL_SECONDS:-0}
INI
    export MLFLOW_AUTH_CONFIG_PATH="$ini"
    args+=(--app-name basic-auth)
    ;;
  none)
    echo "start-server.sh: WARNING: MLFLOW_AUTH=none: anyone who reaches $HOST:$PORT can write" >&2
    ;;
  *) echo "start-server.sh: MLFLOW_AUTH must be basic or none, not '$AUTH'" >&2; exit 2 ;;
esac

echo "start-server.sh: mlflow server on http://$HOST:$PORT, backend $BACKEND, artifacts $ARTIFACTS, auth $AUTH" >&2
exec "$MLFLOW" "${args[@]}"
