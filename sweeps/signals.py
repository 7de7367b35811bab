"""SIGTERM / SIGINT end a sweep cleanly: the handler notes the signal, the driver's loop raises
`Interrupted` at its next check (at most a second later), the service cancels the in-flight tasks, removes this attempt's unfinished claims, marks
the parent run KILLED, prints one line and the process exits 143 / 130 (128 + signal)."""
from __future__ import annotations

import signal
import threading


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


def install() -> Handlers:
    return Handlers()
