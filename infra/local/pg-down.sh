#!/usr/bin/env bash
# Stop the private PostgreSQL server. --purge also deletes its data directory.
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
PGBIN=$(pg_bin)
DATA=$STATE/pg/data
if [[ -n "$PGBIN" && -s "$DATA/PG_VERSION" ]] && as_pg "$PGBIN/pg_ctl" -D "$DATA" status >/dev/null 2>&1; then
  as_pg "$PGBIN/pg_ctl" -D "$DATA" -w -t 60 -m fast stop >/dev/null
  log "PostgreSQL stopped"
else
  log "PostgreSQL not running"
fi
if [[ "${1:-}" == "--purge" ]]; then rm -rf "$STATE/pg"; log "removed $STATE/pg"; fi
