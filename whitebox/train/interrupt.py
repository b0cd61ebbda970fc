"""Ctrl-C and SIGTERM that never land in the middle of a parameter update or a save.

The optimiser updates the parameters in place, one array after another; a ``KeyboardInterrupt``
half-way would leave some arrays at step ``t`` and others at ``t + 1``, and the checkpoint saved
on the way out would be neither. Inside :func:`deferred_interrupt` a Ctrl-C (or a SIGTERM, while
:func:`terminate_as_interrupt` is on) is only noted; it is delivered, as ``KeyboardInterrupt``,
when the block ends, so the state is whole again. The loop also saves its last checkpoint inside
such a block, so a second Ctrl-C during that save waits for it.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager

SIGNALS = (signal.SIGINT, signal.SIGTERM)


def _interrupt(signum, frame):
    raise KeyboardInterrupt(f"signal {signal.Signals(signum).name}")


@contextmanager
def terminate_as_interrupt():
    """Within the block, SIGTERM (``kill``, a job scheduler) raises ``KeyboardInterrupt`` as Ctrl-C does.

    Does nothing outside the main thread or when a handler other than the default is installed.
    """
    if threading.current_thread() is not threading.main_thread() or \
            signal.getsignal(signal.SIGTERM) is not signal.SIG_DFL:
        yield
        return
    signal.signal(signal.SIGTERM, _interrupt)
    try:
        yield
    finally:
        signal.signal(signal.SIGTERM, signal.SIG_DFL)


@contextmanager
def deferred_interrupt():
    """Postpone SIGINT and SIGTERM (those with a Python handler) to the end of the block, then hand the
    first one to the handler that was there.

    Runs the block plainly outside the main thread: there is nothing to defer.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    previous = {s: signal.getsignal(s) for s in SIGNALS}
    handled = [s for s in SIGNALS if callable(previous[s])]
    received = []
    for s in handled:
        signal.signal(s, lambda signum, frame: received.append((signum, frame)))
    try:
        yield
    finally:
        for s in handled:
            signal.signal(s, previous[s])
    if received:
        signum, frame = received[0]
        previous[signum](signum, frame)  # Python's default SIGINT handler raises KeyboardInterrupt
