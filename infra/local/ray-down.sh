#!/usr/bin/env bash
# Stop the local Ray cluster of ray-up.sh: exactly its processes (found by the cluster id in
# their environment, see procs.py), never other Ray instances on the host (`ray stop` would).
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
D=$STATE/ray
if [[ -s "$D/cluster_id" ]]; then
  n=$("$PY" "$LOCAL_DIR/procs.py" stop "$(cat "$D/cluster_id")")
  log "Ray cluster stopped ($n processes)"
  rm -f "$D/cluster_id"
  [[ -s "$D/temp_dir" ]] && rm -rf "$(cat "$D/temp_dir")" && rm -f "$D/temp_dir"
else
  log "Ray cluster not running"
fi
if [[ "${1:-}" == "--purge" ]]; then rm -rf "$D"; log "removed $D"; fi
