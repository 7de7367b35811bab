"""Process helpers for infra/local: find and stop the processes of one local Ray cluster.

The processes `ray start` launches for a cluster of ray-up.sh (gcs_server, raylet, client
server...) inherit DMFRAG_RAY_CLUSTER=<random id> in their environment; Ray daemonises and
renames its processes, so neither the tree of ray-up.sh nor the command lines identify them.
The agents and workers a raylet starts are its descendants. `ray stop` is not used: it stops every Ray instance on the host.

  python procs.py pids ID          print the pids
  python procs.py stop ID          SIGTERM, then SIGKILL after a grace period
  python procs.py listen ID        print the TCP listening addresses of those processes
"""
from __future__ import annotations

import sys

import psutil

MARK = "DMFRAG_RAY_CLUSTER"


def cluster_procs(cluster_id: str) -> list[psutil.Process]:
    """The marked processes and all their descendants (Ray's agents and workers are started
    by the raylet with an environment of their own, without the mark)."""
    out: dict[int, psutil.Process] = {}
    for p in psutil.process_iter():
        try:
            if p.environ().get(MARK) == cluster_id:
                out[p.pid] = p
                for c in p.children(recursive=True):
                    out[c.pid] = c
        except (psutil.Error, OSError):
            pass
    return list(out.values())


def stop(cluster_id: str, grace: float = 10.0) -> int:
    procs = cluster_procs(cluster_id)
    for p in procs:
        try:
            p.terminate()
        except psutil.Error:
            pass
    _, alive = psutil.wait_procs(procs, timeout=grace)
    for p in alive:
        try:
            p.kill()
        except psutil.Error:
            pass
    psutil.wait_procs(alive, timeout=5)
    # processes forked while we were stopping the others
    late = cluster_procs(cluster_id)
    for p in late:
        try:
            p.kill()
        except psutil.Error:
            pass
    return len(procs) + len(late)


def listening(procs) -> list[tuple[int, str, str, int]]:
    out = []
    for p in procs:
        try:
            for c in p.net_connections("tcp"):
                if c.status == psutil.CONN_LISTEN:
                    out.append((p.pid, p.name(), c.laddr.ip, c.laddr.port))
        except psutil.Error:
            pass
    return out


def main(argv: list[str]) -> int:
    cmd, cid = argv[0], argv[1]
    if cmd == "pids":
        print(" ".join(str(p.pid) for p in cluster_procs(cid)))
    elif cmd == "stop":
        print(stop(cid))
    elif cmd == "listen":
        for row in listening(cluster_procs(cid)):
            print(*row)
    else:
        raise SystemExit(__doc__)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
