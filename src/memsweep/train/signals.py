"""Deferring signal handlers (submitit's checkpoint-and-requeue) to the boundary between two training steps."""
from __future__ import annotations

import contextlib
import signal


class SignalGuard:
    """Holds back the handlers of the given signals (e.g. submitit's USR2 checkpoint-and-requeue) while a step
    or an evaluation runs, and runs them right after it, so a checkpoint taken from a signal handler always
    sees a consistent state between two steps.

    This wraps the Python-level handlers rather than masking signals with pthread_sigmask: the OS may deliver
    a process-directed signal to any thread that does not mask it, while Python always runs handlers in the
    main thread, between bytecodes, where a flag can defer them."""

    def __init__(self, signals=()):
        self.handlers, self.pending, self.busy = {}, [], False
        for sig in signals:
            original = signal.getsignal(sig)
            if callable(original):
                self.handlers[sig] = original
                signal.signal(sig, self._handle)

    def _handle(self, signum, frame):
        if self.busy:
            self.pending.append(signum)
        else:
            self.handlers[signum](signum, frame)

    @contextlib.contextmanager
    def hold(self):
        self.busy = True
        try:
            yield
        finally:
            self.busy = False
            while self.pending:
                signum = self.pending.pop(0)
                self.handlers[signum](signum, None)


