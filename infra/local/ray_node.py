"""`ray start` for a node whose IP is loopback (127.0.0.1), used by ray-up.sh.

Why not plain `ray start --node-ip-address=127.0.0.1`: on Linux Ray rewrites a loopback node
IP to the machine's routable address (`ray._private.services.resolve_ip_for_localhost`), and
then its gRPC servers (GCS, raylet, agents, workers) bind to that address or to all
interfaces. Ray's own "single-machine" switch, RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0, keeps every
component on loopback but makes `ray start --address` refuse to add a second node. So this
wrapper
  * keeps 127.0.0.1 as given in this process (resolve_ip_for_localhost is the identity for it),
  * exports RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER=0 after `ray` is imported, so the processes it
    spawns (gcs_server, raylet, agents, workers) also resolve their own IP to loopback,
and otherwise is `ray start` with the same arguments. All nodes of the cluster run on this host.
"""
from __future__ import annotations

import os
import sys

LOOPBACK = ("127.0.0.1", "localhost", "::1")


def main(argv: list[str]) -> int:
    import ray._private.services as services
    import ray.scripts.scripts as scripts

    orig = services.resolve_ip_for_localhost
    services.resolve_ip_for_localhost = lambda host: host if host in LOOPBACK else orig(host)
    os.environ["RAY_ENABLE_WINDOWS_OR_OSX_CLUSTER"] = "0"
    try:
        scripts.cli.main(args=["start", *argv], prog_name="ray", standalone_mode=True)
    except SystemExit as e:
        return int(e.code or 0)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
