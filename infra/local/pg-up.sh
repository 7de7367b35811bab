#!/usr/bin/env bash
# Start a private PostgreSQL server for MLflow on 127.0.0.1:$DMFRAG_PG_PORT (default 55432),
# data in $DMFRAG_STATE_DIR/pg (default infra/local/.state/pg). Installs Debian's `postgresql`
# package when missing (as root). Creates the role $MLFLOW_DB_USER (password from the
# environment or generated into .state/secrets.env) and the databases mlflow + mlflow_auth.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
load_secrets

PGBIN=$(pg_bin)
if [[ -z "$PGBIN" ]]; then
  if [[ $(id -u) -eq 0 ]] && command -v apt-get >/dev/null; then
    log "installing PostgreSQL (apt-get install postgresql)"
    export DEBIAN_FRONTEND=noninteractive
    apt-get install -y -q postgresql >/dev/null 2>&1 || { apt-get update -q >/dev/null && apt-get install -y -q postgresql >/dev/null; }
    PGBIN=$(pg_bin)
  fi
  [[ -n "$PGBIN" ]] || { log "PostgreSQL not found: apt-get install postgresql"; exit 1; }
fi

PGDIR=$STATE/pg
DATA=$PGDIR/data
SOCK=$PGDIR/run
mkdir -p "$PGDIR"
chmod 0711 "$PGDIR"
mkdir -p "$DATA" "$SOCK"
if [[ $(id -u) -eq 0 ]]; then chown postgres: "$DATA" "$SOCK"; fi
chmod 700 "$DATA"; chmod 755 "$SOCK"

if [[ ! -s "$DATA/PG_VERSION" ]]; then
  log "initdb $DATA"
  # local socket: peer auth (only the server's owner is superuser); TCP: passwords (scram-sha-256)
  as_pg "$PGBIN/initdb" -D "$DATA" --auth-local=peer --auth-host=scram-sha-256 -E UTF8 \
    --no-instructions >"$PGDIR/initdb.log" 2>&1 || { cat "$PGDIR/initdb.log" >&2; exit 1; }
fi

if as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  log "PostgreSQL already running ($DATA)"
else
  touch "$PGDIR/server.log"; [[ $(id -u) -eq 0 ]] && chown postgres: "$PGDIR/server.log"
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -l "$PGDIR/server.log" -w -t 60 \
    -o "-c listen_addresses=$HOST -p $PG_PORT -k $SOCK -c max_connections=200" start >/dev/null
  log "PostgreSQL listening on $HOST:$PG_PORT"
fi

# role + databases; the password travels in the environment (psql \getenv), never in argv or a
# statement log (log_min_error_statement=panic for this session)
as_pg "$PGBIN/psql" -q -X -h "$SOCK" -p "$PG_PORT" -d postgres -v ON_ERROR_STOP=1 \
  -v user="$MLFLOW_DB_USER" -v db="$MLFLOW_DB_NAME" -v authdb="$MLFLOW_AUTH_DB_NAME" >/dev/null <<'SQL'
SET log_min_error_statement = panic;
SET log_statement = none;
\getenv pw MLFLOW_DB_PASSWORD
SELECT format('CREATE ROLE %I LOGIN', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_roles WHERE rolname = :'user') \gexec
SELECT format('ALTER ROLE %I WITH LOGIN PASSWORD %L', :'user', :'pw') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'db', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'db') \gexec
SELECT format('CREATE DATABASE %I OWNER %I', :'authdb', :'user') WHERE NOT EXISTS (SELECT 1 FROM pg_database WHERE datname = :'authdb') \gexec
SQL
log "databases $MLFLOW_DB_NAME, $MLFLOW_AUTH_DB_NAME owned by $MLFLOW_DB_USER ready"
