"""Ctrl-C at any moment of a command stops it: exit code 130 and nothing (more) written.

Python's default SIGINT handling raises KeyboardInterrupt wherever the main thread happens to
be; inside a garbage-collector callback (JAX registers one that frees device buffers, and it
runs often while modules import) that exception is printed as "Exception ignored" and lost, so
the command would go on and write its file. The handler installed by :func:`sigint_guard`
records every Ctrl-C, raises it again once such a callback has returned, and
:func:`check_interrupt` (called before every file is written) turns a recorded Ctrl-C into
KeyboardInterrupt in case it was swallowed anywhere else.

Standard library only: :func:`dmft.cli.main` installs the handler before it imports the rest.
"""

from __future__ import annotations

import _thread
import contextlib
import gc
import signal
import threading

# hit: Ctrl-C was pressed; raised: KeyboardInterrupt was raised outside a gc callback (the
# command is unwinding); active: the handler is installed
_STATE = {"hit": False, "raised": False, "active": False, "timer": None}


def _in_gc_callback(frame) -> bool:
    codes = {getattr(cb, "__code__", None) for cb in gc.callbacks}
    codes.discard(None)
    while frame is not None:
        if frame.f_code in codes:
            return True
        frame = frame.f_back
    return False


def _redeliver():
    if _STATE["active"] and not _STATE["raised"]:
        _thread.interrupt_main()


def _handler(signum, frame):
    _STATE["hit"] = True
    if _STATE["raised"]:
        return  # already unwinding to exit code 130: a second Ctrl-C must not escape that
    if _in_gc_callback(frame):
        # an exception raised here would be ignored: deliver the interrupt again shortly, when
        # the main thread is back in ordinary code
        timer = threading.Timer(0.01, _redeliver)
        timer.daemon = True
        _STATE["timer"] = timer
        timer.start()
        return
    _STATE["raised"] = True
    raise KeyboardInterrupt


def interrupt_requested() -> bool:
    """True once Ctrl-C was pressed during the running command."""
    return bool(_STATE["hit"])


def check_interrupt() -> None:
    """Raise KeyboardInterrupt if Ctrl-C was pressed (even if the first one was swallowed)."""
    if _STATE["hit"]:
        _STATE["raised"] = True
        raise KeyboardInterrupt


@contextlib.contextmanager
def sigint_guard():
    """Install the SIGINT handler for the duration of one command (main thread only; elsewhere
    Python's own handling stays), then restore the previous one."""
    _STATE.update(hit=False, raised=False, timer=None)
    try:
        previous = signal.signal(signal.SIGINT, _handler)
    except ValueError:  # signal handlers can only be set from the main thread
        previous = None
    _STATE["active"] = previous is not None
    try:
        yield
    finally:
        _STATE["active"] = False
        timer = _STATE["timer"]
        if timer is not None:
            timer.cancel()
            _STATE["timer"] = None
        if previous is not None:
            signal.signal(signal.SIGINT, previous)
