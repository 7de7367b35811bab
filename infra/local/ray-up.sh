#!/usr/bin/env bash
# Start a local multi-node Ray cluster on loopback: a head node plus $DMFRAG_RAY_WORKERS (2)
# worker nodes, each `ray start --num-cpus=1`, all on 127.0.0.1, with Ray's token
# authentication ON (RAY_AUTH_MODE=token; token in .state/ray/auth_token unless RAY_AUTH_TOKEN
# is set). See ray_node.py for why `ray start` is wrapped.
#   DMFRAG_RAY_OBJECT_STORE_MB  object store per node (default 200)
#   ray-up.sh --add-worker      add one more worker node to the running cluster
#   DMFRAG_RAY_DASHBOARD=1      also start the dashboard on 127.0.0.1:$DMFRAG_RAY_DASHBOARD_PORT
#                               (default 8265), needed for `ray job submit`
source "$(dirname "${BASH_SOURCE[0]}")/common.sh"
ray_auth_env
D=$STATE/ray
mkdir -p "$D"
running=
if [[ -s "$D/cluster_id" ]] && [[ -n "$("$PY" "$LOCAL_DIR/procs.py" pids "$(cat "$D/cluster_id")")" ]]; then
  running=1
fi
add_worker=
[[ "${1:-}" == "--add-worker" ]] && add_worker=1
if [[ -n "$running" && -z "$add_worker" ]]; then
  log "Ray cluster already running (id $(cat "$D/cluster_id")); ray-down.sh first"; exit 0
fi
if [[ -n "$add_worker" && -z "$running" ]]; then log "no Ray cluster running; ray-up.sh first"; exit 1; fi
export RAY_USAGE_STATS_ENABLED=0
if [[ -z "$add_worker" ]]; then
  export DMFRAG_RAY_CLUSTER=$("$PY" -c 'import uuid; print(uuid.uuid4().hex)')
  echo "$DMFRAG_RAY_CLUSTER" > "$D/cluster_id"
  # short path: Ray's unix sockets live under it (108-byte limit); one per cluster port
  echo "${DMFRAG_RAY_TEMP_DIR:-/tmp/dmfrag-ray-$RAY_PORT}" > "$D/temp_dir"
fi
export DMFRAG_RAY_CLUSTER=$(cat "$D/cluster_id")
TMPD=$(cat "$D/temp_dir")
OBJ=$(( ${DMFRAG_RAY_OBJECT_STORE_MB:-200} * 1024 * 1024 ))
common=(--node-ip-address=$HOST --num-cpus=1 --temp-dir="$TMPD" --object-store-memory=$OBJ
        --dashboard-agent-listen-port=0 --disable-usage-stats)
dash=(--include-dashboard=false)
if [[ "${DMFRAG_RAY_DASHBOARD:-0}" == 1 ]]; then
  dash=(--include-dashboard=true --dashboard-host=$HOST --dashboard-port=${DMFRAG_RAY_DASHBOARD_PORT:-8265})
fi
if [[ -n "$add_worker" ]]; then
  n=$(date +%s%N)
  "$PY" "$LOCAL_DIR/ray_node.py" --address="$HOST:$RAY_PORT" "${common[@]}" >"$D/worker-$n.log" 2>&1 \
    || { tail -n 30 "$D/worker-$n.log" >&2; exit 1; }
  log "Ray worker node added to $HOST:$RAY_PORT"; exit 0
fi
log "Ray head on $HOST:$RAY_PORT"
"$PY" "$LOCAL_DIR/ray_node.py" --head --port="$RAY_PORT" --ray-client-server-port=$((RAY_PORT + 1)) \
  "${dash[@]}" "${common[@]}" >"$D/head.log" 2>&1 || { tail -n 30 "$D/head.log" >&2; exit 1; }
for i in $(seq 1 "$RAY_WORKERS"); do
  log "Ray worker node $i"
  "$PY" "$LOCAL_DIR/ray_node.py" --address="$HOST:$RAY_PORT" "${common[@]}" >"$D/worker$i.log" 2>&1 \
    || { tail -n 30 "$D/worker$i.log" >&2; exit 1; }
done
log "Ray cluster up: $((RAY_WORKERS + 1)) nodes, $((RAY_WORKERS + 1)) CPUs, address $HOST:$RAY_PORT"
