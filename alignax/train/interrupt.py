"""Ctrl-C during training stops the run between steps, not inside a checkpoint save.

Why: a KeyboardInterrupt raised wherever the main thread happens to be can land inside Orbax's
asynchronous save; its worker threads then fail against a closed event loop and print tracebacks
while the interpreter exits (seen in tests/test_rundir.py under load). With `deferred_sigint` the
first Ctrl-C only sets `requested`; the loop checks it after each step (and its checkpoint) and
stops there. A second Ctrl-C raises KeyboardInterrupt at once, as usual.
"""

from __future__ import annotations

import contextlib
import signal
import sys
import threading


class StopRequest:
    """Set by the first SIGINT; `requested` is read by the training loop between steps."""

    def __init__(self):
        self.requested = False

    def handle(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        sys.stderr.write("\nCtrl-C: stopping after this step (Ctrl-C again to stop now).\n")


@contextlib.contextmanager
def deferred_sigint():
    """Yields a StopRequest; SIGINT sets it instead of raising (main thread only, else a no-op)."""
    stop = StopRequest()
    if threading.current_thread() is not threading.main_thread():
        yield stop
        return
    previous = signal.signal(signal.SIGINT, stop.handle)
    try:
        yield stop
    finally:
        signal.signal(signal.SIGINT, previous)
