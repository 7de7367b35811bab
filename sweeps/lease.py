"""Leases: how a sweep tells a RUNNING claim of a live attempt from one an interrupted attempt left.

An attempt (one `python -m sweeps` process) keeps one lease, a tag on its sweep's parent run:
`dmfrag.lease.<attempt id>` = "<host> <pid> <expiry, epoch seconds>", renewed every lease_s / 3
by a heartbeat thread. Each child run it claims carries `dmfrag.attempt` = its id. A claim is live
while its attempt's lease has not expired and, when the attempt ran on this host, its process
exists (so a driver killed here is recognised at once; elsewhere after at most lease_s).
"""
from __future__ import annotations

import logging
import os
import socket
import threading
import time
import uuid
from typing import Optional

log = logging.getLogger(__name__)

T_ATTEMPT = "dmfrag.attempt"
LEASE_PREFIX = "dmfrag.lease."
HOST = socket.gethostname()


def _pid_exists(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def alive(lease: Optional[str], now: Optional[float] = None) -> bool:
    """Is the attempt holding this lease value still running?"""
    if not lease:
        return False
    try:
        host, pid, expiry = lease.rsplit(" ", 2)
        pid_i, expiry_f = int(pid), float(expiry)
    except ValueError:
        return False
    if expiry_f < (time.time() if now is None else now):
        return False
    if host == HOST and not _pid_exists(pid_i):
        return False
    return True


class Attempt:
    """This process's lease on the parent run, renewed by a daemon thread while the sweep runs."""

    def __init__(self, set_tag, delete_tag, parent_id: str, lease_s: float):
        self.id = uuid.uuid4().hex
        self.parent_id = parent_id
        self.key = LEASE_PREFIX + self.id
        self.lease_s = float(lease_s)
        self._set, self._delete = set_tag, delete_tag
        self._stop = threading.Event()
        self._thread: Optional[threading.Thread] = None

    def value(self) -> str:
        return f"{HOST} {os.getpid()} {time.time() + self.lease_s:.1f}"

    def start(self) -> "Attempt":
        self._set(self.parent_id, self.key, self.value())  # before any claim is made
        self._thread = threading.Thread(target=self._beat, name="dmfrag-lease", daemon=True)
        self._thread.start()
        return self

    def _beat(self) -> None:
        while not self._stop.wait(self.lease_s / 3):
            try:
                self._set(self.parent_id, self.key, self.value())
            except Exception as e:  # the store is unreachable for now; the next beat tries again
                log.warning("lease renewal failed: %s", str(e).splitlines()[0] if str(e) else type(e).__name__)

    def stop(self) -> None:
        self._stop.set()
        if self._thread is not None:
            self._thread.join(timeout=5)
        try:
            self._delete(self.parent_id, self.key)
        except Exception:
            pass
