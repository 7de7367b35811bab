"""Checks made before a sweep touches the store or starts anything: the folders it writes are
writable, and the tracking server / database and the Ray cluster answer within seconds. Each
failure is one line naming the setting."""
from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path
from urllib.parse import urlparse

from sim.config import ConfigError


class Unreachable(RuntimeError):
    """A service (tracking server, database, Ray cluster) did not answer."""


def writable_dir(key: str, path: Path) -> None:
    try:
        path.mkdir(parents=True, exist_ok=True)
        fd, name = tempfile.mkstemp(prefix=".dmfrag-probe-", dir=path)
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ConfigError(key, str(path), f"a writable directory ({e.strerror or e})") from None


def _probe(what: str, key: str, host: str, port: int, timeout: float) -> None:
    try:
        socket.create_connection((host, port), timeout=timeout).close()
    except OSError as e:
        raise Unreachable(f"{what} at {host}:{port} ({key}) did not answer within {timeout:g} s: "
                          f"{e.strerror or type(e).__name__}") from None


DEFAULT_PORTS = {"http": 80, "https": 443, "postgresql": 5432, "mysql": 3306, "mssql": 1433}


def check_tracking(uri: str, timeout: float) -> None:
    from .tracking import redact

    scheme = uri.split(":", 1)[0].split("+")[0]
    if scheme == "sqlite":
        path = uri[len("sqlite:///"):] if uri.startswith("sqlite:///") else ""
        if path and path != ":memory:":
            writable_dir("tracking.uri", Path(path).parent)
        return
    if scheme in DEFAULT_PORTS:
        p = urlparse(uri)
        if p.hostname:
            _probe(f"the tracking store {redact(uri)}", "tracking.uri", p.hostname, p.port or DEFAULT_PORTS[scheme],
                   timeout)


def check_ray(ray_conf, timeout: float) -> None:
    address = ray_conf.address or os.environ.get("RAY_ADDRESS")
    if not address or address in ("auto", "local"):
        return
    p = urlparse(address if "://" in address else "ray-gcs://" + address)
    if p.hostname and p.port:
        _probe("the Ray cluster", "ray.address", p.hostname, p.port, timeout)
