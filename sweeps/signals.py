"""SIGTERM / SIGINT end a sweep cleanly: the handler notes the signal, the driver's loop raises
`Interrupted` at its next check (at most a second later), the service cancels the in-flight tasks, removes this attempt's unfinished claims, marks
the parent run KILLED, prints one line and the process exits 143 / 130 (128 + signal)."""
from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


class Interrupted(BaseException):
    def __init__(self, signame: str, code: int):
        super().__init__(signame)
        self.signame, self.code = signame, code


SIGNALS = {signal.SIGTERM: ("SIGTERM", 143), signal.SIGINT: ("SIGINT", 130)}


class Handlers:
    """The handler only notes the signal (raising inside Ray's compiled wait would corrupt the
    interpreter's state); `check()`, called between bounded waits, raises `Interrupted`."""

    def __init__(self):
        self.active = threading.current_thread() is threading.main_thread()
        self.saved = {s: signal.getsignal(s) for s in SIGNALS} if self.active else {}
        self.fired: tuple[str, int] | None = None
        self.reinstall()

    def _note(self, signum, _frame) -> None:
        if self.fired is None:
            self.fired = SIGNALS[signum]

    def check(self) -> None:
        if self.fired is not None:
            raise Interrupted(*self.fired)

    def reinstall(self) -> None:
        if self.active:
            for s in SIGNALS:
                signal.signal(s, self._note)

    def quiet(self) -> None:
        """While cleaning up: a second signal does not cut the clean-up short."""
        if self.active:
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)

    def restore(self) -> None:
        if self.active:
            for s, h in self.saved.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)


@contextmanager
def kept_through_ray_init():
    """ray.init replaces the SIGTERM handler with its own (sys.exit, or abort in the middle of
    its C++ start) while it starts a local instance, which takes seconds: a SIGTERM then ended
    the sweep with 15, 134 or -15 and no clean-up. Ours stays: the signal is noted, ray.init
    finishes, and the driver's next check ends the sweep cleanly (ray.shutdown stops what
    ray.init started)."""
    try:
        import ray._private.utils as ray_utils
    except ImportError:  # Ray moved it: its handlers apply during start-up, ours after
        yield
        return
    saved = getattr(ray_utils, "set_sigterm_handler", None)
    if saved is None or threading.current_thread() is not threading.main_thread():
        yield
        return
    ray_utils.set_sigterm_handler = lambda _handler: None
    try:
        yield
    finally:
        ray_utils.set_sigterm_handler = saved


def install() -> Handlers:
    return Handlers()
