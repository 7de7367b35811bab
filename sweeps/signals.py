"""SIGTERM / SIGINT end a sweep cleanly: the handler raises `Interrupted` in the driver's main
thread, the service cancels the in-flight tasks, removes this attempt's unfinished claims, marks
the parent run KILLED, prints one line and the process exits 143 / 130 (128 + signal)."""
from __future__ import annotations

import signal
import threading


class Interrupted(BaseException):
    def __init__(self, signame: str, code: int):
        super().__init__(signame)
        self.signame, self.code = signame, code


SIGNALS = {signal.SIGTERM: ("SIGTERM", 143), signal.SIGINT: ("SIGINT", 130)}


def _raise(signum, _frame):
    name, code = SIGNALS[signum]
    raise Interrupted(name, code)


class Handlers:
    def __init__(self):
        self.active = threading.current_thread() is threading.main_thread()
        self.saved = {s: signal.getsignal(s) for s in SIGNALS} if self.active else {}
        self.reinstall()

    def reinstall(self) -> None:
        if self.active:
            for s in SIGNALS:
                signal.signal(s, _raise)

    def quiet(self) -> None:
        """While cleaning up: a second signal does not cut the clean-up short."""
        if self.active:
            for s in SIGNALS:
                signal.signal(s, signal.SIG_IGN)

    def restore(self) -> None:
        if self.active:
            for s, h in self.saved.items():
                signal.signal(s, h if h is not None else signal.SIG_DFL)


def install() -> Handlers:
    return Handlers()
