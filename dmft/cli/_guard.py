"""How a command fails: one line ``error: ...`` on stderr and an exit code, never a traceback.

Exit codes: 1 a user error, a diverged run or an unexpected exception (``DMFT_TRACEBACK=1``
shows the traceback of the latter); 130 interrupted (Ctrl-C). Each message says what was
written before the failure (the files recorded in :data:`WRITTEN`). Library messages name
Python arguments (`noise`); :func:`flag_message` turns them into flags (`--label-noise`).
"""

from __future__ import annotations

import contextlib
import os
import re
import sys
import warnings

from .._cache import JAX_CACHE_READ_ERROR, cache_warning_once
from .._errors import DivergenceError, DMFTInputError
from ._interrupt import check_interrupt, interrupt_requested

WRITTEN: list[str] = []  # files written by the running command (for the failure message)


def one_line(msg) -> str:
    return " ".join(str(msg).split())


@contextlib.contextmanager
def user_warnings():
    """Show warnings as one line ``warning: ...`` on stderr, whatever the warning filters say."""
    def show(message, category, filename, lineno, file=None, line=None):
        if str(message).startswith(JAX_CACHE_READ_ERROR):
            # one per damaged entry from JAX: one line per command, naming the folder
            message = cache_warning_once()
            if message is None:
                return
        print(f"warning: {one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


# Python argument name -> command-line flag, for messages (`noise` → `--label-noise`)
FLAGS = {
    "p": "--p", "activation": "--activation", "second_layer": "--second-layer",
    "alpha": "--alpha", "lr": "--lr", "steps": "--steps", "ridge": "--ridge",
    "noise": "--label-noise", "schedule": "--schedule", "lr_a": "--lr-a", "m0": "--m0",
    "target": "--target", "samples": "--samples", "seed": "--seed", "replicas": "--replicas",
    "chunk_size": "--chunk-size", "response": "--response", "dtype": "--dtype", "d": "--d",
    "seeds": "--seeds", "seed_batch": "--seed-batch", "test_error": "--test-error",
    "threshold": "--threshold", "sys_error": "--sys-error", "dpi": "--dpi", "out": "--out",
    "fig_dir": "--fig-dir", "devices": "--devices", "max_points": "--max-points",
    "momentum": "--momentum", "momentum_a": "--momentum-a", "nesterov": "--nesterov",
    "wrt": "--wrt", "objective": "--objective", "iterations": "--iterations",
    "learning_rate": "--learning-rate",
}
_NAME = r"([a-z][a-z0-9_]*)((?:\[\d+\])?)"


def flag_message(msg: str, flags: dict | None = None) -> str:
    """Rewrite a library message for the command line: `noise` → `--label-noise`,
    ``got noise=1`` → ``got --label-noise=1``, ``np.float64(-0.1)`` → ``-0.1``."""
    flags = FLAGS if flags is None else flags

    def tick(m):
        name, index = m.group(1), m.group(2)
        return f"`{flags[name]}{index}`" if name in flags else m.group(0)

    def got(m):
        name, index = m.group(2), m.group(3)
        return f"{m.group(1)}{flags[name]}{index}=" if name in flags else m.group(0)

    msg = re.sub(r"`" + _NAME + r"`", tick, msg)
    msg = re.sub(r"(\bgot |, )" + _NAME + r"=", got, msg)
    msg = re.sub(r"\bnp\.(?:float|int)\d*\(([^()]*)\)", r"\1", msg)
    return msg


def run_guarded(fn, *args) -> int:
    """Call ``fn(*args) -> int``; turn user errors and divergence into exit code 1 + one line,
    and Ctrl-C into exit code 130 + one line."""
    WRITTEN.clear()
    try:
        with user_warnings():
            code = fn(*args)
        check_interrupt()  # a Ctrl-C that some callback swallowed still ends the command
        return code
    except (DMFTInputError, DivergenceError, FileNotFoundError, IsADirectoryError,
            PermissionError) as exc:
        sys.stdout.flush()
        msg = flag_message(one_line(exc))
        if getattr(args[0] if args else None, "out", None) and not re.search(
                r"\b(saved|written)\b", msg):
            msg += (f"; already written: {', '.join(WRITTEN)}" if WRITTEN
                    else "; nothing written")
        print(f"error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return interrupted(args)
    except Exception as exc:
        # an interrupt inside a JAX callback comes back wrapped in another exception
        if "KeyboardInterrupt" in str(exc) or interrupt_requested():
            return interrupted(args)
        if os.environ.get("DMFT_TRACEBACK"):
            raise
        # anything else is a bug or a resource failure (e.g. out of memory): still one line
        sys.stdout.flush()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        saved = (f"already written: {', '.join(WRITTEN)}" if WRITTEN else "nothing written")
        print(f"error: unexpected {type(exc).__name__}: {first}; {saved}; rerun with "
              "DMFT_TRACEBACK=1 for the traceback and please report it", file=sys.stderr)
        return 1


def before_write() -> None:
    """Call right before a command writes a file: stop there if Ctrl-C was pressed."""
    check_interrupt()


def interrupted(args=()) -> int:
    """Ctrl-C: one line saying what was (not) written; exit code 130."""
    sys.stdout.flush()
    if WRITTEN:
        what = f"; already written: {', '.join(WRITTEN)}; nothing else written"
    else:
        out = getattr(args[0], "out", None) if args else None
        what = f"; nothing written to {out}" if out else "; nothing written"
    print(f"error: interrupted (Ctrl-C){what}", file=sys.stderr)
    return 130
