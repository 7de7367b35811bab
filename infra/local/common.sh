# infra/local/common.sh: sourced by the infra/local scripts (not run directly).
# Everything binds to 127.0.0.1. Every setting can be overridden from the environment:
#   DMFRAG_STATE_DIR   state (databases, logs, generated secrets); default infra/local/.state (git-ignored)
#   DMFRAG_PG_PORT     PostgreSQL port                  (default 55432)
#   MLFLOW_PORT        MLflow tracking server port      (default 5000)
#   DMFRAG_RAY_PORT    Ray head (GCS) port              (default 6380; the Ray client server uses +1)
#   DMFRAG_RAY_WORKERS Ray worker nodes besides the head (default 2), each --num-cpus=1
#   DMFRAG_PYTHON      the Python with ray/mlflow/psycopg2 (default .venv/bin/python of the repo)
set -euo pipefail
umask 077   # secrets, state and logs readable by their owner only

LOCAL_DIR=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
REPO=$(cd "$LOCAL_DIR/../.." && pwd)
STATE=${DMFRAG_STATE_DIR:-$LOCAL_DIR/.state}
HOST=127.0.0.1
PG_PORT=${DMFRAG_PG_PORT:-55432}
MLFLOW_PORT=${MLFLOW_PORT:-5000}
RAY_PORT=${DMFRAG_RAY_PORT:-6380}
RAY_WORKERS=${DMFRAG_RAY_WORKERS:-2}
if [[ -n "${DMFRAG_PYTHON:-}" ]]; then PY=$DMFRAG_PYTHON
elif [[ -x "$REPO/.venv/bin/python" ]]; then PY=$REPO/.venv/bin/python
else PY=$(command -v python3); fi
BIN=$(dirname "$PY")
MLFLOW_DB_USER=${MLFLOW_DB_USER:-mlflow}
MLFLOW_DB_NAME=${MLFLOW_DB_NAME:-mlflow}
MLFLOW_AUTH_DB_NAME=${MLFLOW_AUTH_DB_NAME:-mlflow_auth}
MLFLOW_AUTH_ADMIN_USER=${MLFLOW_AUTH_ADMIN_USER:-admin}

mkdir -p "$STATE"
# the PostgreSQL server runs as the `postgres` user and must be able to reach its data directory
chmod 0711 "$STATE"

log() { echo "[dmfrag-local] $*" >&2; }

# Secrets: taken from the environment when set, else generated once into $STATE/secrets.env
# (mode 0600, git-ignored). Never written anywhere else, never passed on a command line.
load_secrets() {
  local f="$STATE/secrets.env"
  if [[ ! -f "$f" ]]; then
    local gen='import secrets; print(secrets.token_urlsafe(24))'
    {
      echo "GEN_MLFLOW_DB_PASSWORD=$("$PY" -c "$gen")"
      echo "GEN_MLFLOW_AUTH_ADMIN_PASSWORD=$("$PY" -c "$gen")"
      echo "GEN_MLFLOW_FLASK_SERVER_SECRET_KEY=$("$PY" -c "$gen")"
    } > "$f.tmp"
    chmod 600 "$f.tmp"; mv "$f.tmp" "$f"
  fi
  # shellcheck disable=SC1090
  source "$f"
  export MLFLOW_DB_PASSWORD=${MLFLOW_DB_PASSWORD:-$GEN_MLFLOW_DB_PASSWORD}
  export MLFLOW_AUTH_ADMIN_PASSWORD=${MLFLOW_AUTH_ADMIN_PASSWORD:-$GEN_MLFLOW_AUTH_ADMIN_PASSWORD}
  export MLFLOW_FLASK_SERVER_SECRET_KEY=${MLFLOW_FLASK_SERVER_SECRET_KEY:-$GEN_MLFLOW_FLASK_SERVER_SECRET_KEY}
  export MLFLOW_DB_USER MLFLOW_DB_NAME MLFLOW_AUTH_DB_NAME MLFLOW_AUTH_ADMIN_USER
}

# Ray token authentication (RAY_AUTH_MODE=token): a token from $RAY_AUTH_TOKEN, else one
# generated once into $STATE/ray/auth_token (0600). Not ~/.ray/auth_token: that file would
# switch every other Ray instance of this user to token mode.
ray_auth_env() {
  mkdir -p "$STATE/ray"
  export RAY_AUTH_MODE=token
  if [[ -z "${RAY_AUTH_TOKEN:-}" ]]; then
    if [[ ! -s "$STATE/ray/auth_token" ]]; then
      "$PY" -c 'import secrets; print(secrets.token_hex(32))' > "$STATE/ray/auth_token.tmp"
      chmod 600 "$STATE/ray/auth_token.tmp"; mv "$STATE/ray/auth_token.tmp" "$STATE/ray/auth_token"
    fi
    export RAY_AUTH_TOKEN_PATH="$STATE/ray/auth_token"
  fi
}

pg_bin() {
  local d
  d=$(ls -d /usr/lib/postgresql/*/bin 2>/dev/null | sort -V | tail -n1 || true)
  if [[ -z "$d" ]] && command -v pg_ctl >/dev/null; then d=$(dirname "$(command -v pg_ctl)"); fi
  echo "$d"
}

# run a command as the PostgreSQL server's owner: `postgres` when we are root, else ourselves
as_pg() {
  if [[ $(id -u) -eq 0 ]]; then runuser -u postgres -- "$@"; else "$@"; fi
}

wait_http() {  # wait_http URL SECONDS [PID: give up as soon as it exits]
  local url=$1 t=${2:-60} pid=${3:-} i
  for ((i = 0; i < t * 4; i++)); do
    if [[ -n "$pid" ]] && ! kill -0 "$pid" 2>/dev/null; then return 1; fi
    if "$PY" - "$url" <<'PYEOF' 2>/dev/null; then return 0; fi
import sys, urllib.request
urllib.request.urlopen(sys.argv[1], timeout=2).read()
PYEOF
    sleep 0.25
  done
  return 1
}

print_env() {
  load_secrets
  cat <<ENVEOF
# --- paste into your shell (or: eval "\$(infra/local/env.sh)") ---
export RAY_ADDRESS=$HOST:$RAY_PORT
export RAY_AUTH_MODE=token
export RAY_AUTH_TOKEN_PATH=$STATE/ray/auth_token
export RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0   # keep the driver's node IP on loopback (see infra/README.md)
export MLFLOW_TRACKING_URI=http://$HOST:$MLFLOW_PORT
export MLFLOW_TRACKING_USERNAME=$MLFLOW_AUTH_ADMIN_USER
ENVEOF
  if [[ "$MLFLOW_AUTH_ADMIN_PASSWORD" == "$GEN_MLFLOW_AUTH_ADMIN_PASSWORD" ]]; then
    echo "export MLFLOW_TRACKING_PASSWORD=\"\$(sed -n 's/^GEN_MLFLOW_AUTH_ADMIN_PASSWORD=//p' $STATE/secrets.env)\""
  else
    echo 'export MLFLOW_TRACKING_PASSWORD="$MLFLOW_AUTH_ADMIN_PASSWORD"   # the password you started the server with'
  fi
}
