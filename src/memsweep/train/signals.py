"""Deferring signal handlers (submitit's checkpoint-and-requeue) to the boundary between two training steps."""
from __future__ import annotations

import contextlib
import signal
import threading


class SignalGuard:
    """Holds back the handlers of the given signals (e.g. submitit's USR2 checkpoint-and-requeue) while a step
    or an evaluation runs, and runs them right after it, so a checkpoint taken from a signal handler always
    sees a consistent state between two steps.

    This wraps the Python-level handlers rather than masking signals with pthread_sigmask: the OS may deliver
    a process-directed signal to any thread that does not mask it, while Python always runs handlers in the
    main thread, between bytecodes, where a flag can defer them."""

    def __init__(self, signals=()):
        self.handlers, self.pending, self.busy = {}, [], False
        if threading.current_thread() is not threading.main_thread():
            signals = ()  # Python sets handlers only in the main thread; a thread's loop defers nothing
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
            self.flush()

    def run(self, signals) -> None:
        """Run the handlers of `signals` (taken from `pending` by the caller: train.distributed.agree)."""
        for signum in signals:
            self.handlers[signum](signum, None)

    def flush(self) -> None:
        """Run the handlers of the signals held back so far (inside `hold` too: a loop on several ranks runs
        them only once every rank has them, train.distributed.agree)."""
        while self.pending:
            signum = self.pending.pop(0)
            self.handlers[signum](signum, None)




class Interrupted(KeyboardInterrupt):
    """SIGTERM (a plain sbatch job's time limit, a shutdown) or SIGINT (Ctrl-C), raised between two steps:
    the loop checkpoints the runs in training at the current step and marks them stopped (resumable).
    A KeyboardInterrupt, so that nothing on the way up takes it for a failure. args: (signal number,)."""

    @property
    def signum(self) -> int:
        return self.args[0]

    @property
    def exit_status(self) -> int:
        return 128 + self.signum  # the shell's convention: 143 for SIGTERM, 130 for SIGINT


# what a plain sbatch job gets at its time limit (or a machine at shutdown), and Ctrl-C
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)


def _raise_interrupted(signum, frame):
    raise Interrupted(signum)


@contextlib.contextmanager
def interruptible(signals=STOP_SIGNALS):
    """While inside, `signals` raise Interrupted; wrap training in SignalGuard(signals) (made inside) so that
    it is raised between two steps. A no-op outside the main thread, where Python cannot set handlers."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {sig: signal.signal(sig, _raise_interrupted) for sig in signals}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
