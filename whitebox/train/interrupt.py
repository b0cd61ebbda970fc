"""Ctrl-C that never lands in the middle of a parameter update.

The optimiser updates the parameters in place, one array after another; a ``KeyboardInterrupt``
half-way would leave some arrays at step ``t`` and others at ``t + 1``, and the checkpoint saved
on the way out would be neither. Inside :func:`deferred_interrupt` a Ctrl-C is only noted; it is
delivered (as ``KeyboardInterrupt``, normally) when the block ends, so the state is whole again.
"""

from __future__ import annotations

import signal
import threading
from contextlib import contextmanager


@contextmanager
def deferred_interrupt():
    """Postpone SIGINT to the end of the block, then hand it to the handler that was there.

    Runs the block plainly outside the main thread, and when SIGINT is ignored (as in a
    background job of a shell script) or has no Python handler: there is nothing to defer.
    """
    previous = signal.getsignal(signal.SIGINT)
    if threading.current_thread() is not threading.main_thread() or not callable(previous):
        yield
        return
    received = []
    signal.signal(signal.SIGINT, lambda signum, frame: received.append(frame))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
    if received:
        previous(signal.SIGINT, received[0])  # Python's default handler raises KeyboardInterrupt
