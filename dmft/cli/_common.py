"""What every ``dmft`` command and the ``solvers/`` runner share: each flag group defined once
(problem, run sizes, --dtype, --devices, progress, --out, --dpi), the flag → value checks done
before any compute, the config print, and saving a run (or its partial file on divergence).

The one-line ``error: ...`` reporting and the exit codes are in :mod:`._guard`.
"""

from __future__ import annotations

import argparse
import json
import re
import sys

from .._errors import DivergenceError, DMFTInputError
from .._validate import check_choice, check_int
from ._guard import WRITTEN, before_write, one_line

PROBLEM_DEFAULTS = dict(p=2, activation="relu", second_layer="alternating", alpha=3.0, lr=0.2,
                        steps=6, ridge=0.0, noise=0.0, schedule="reuse", m0=None)
DEFAULT_SAMPLES = 200_000
DEFAULT_D = 2000
DEFAULT_SEEDS = 16
DEFAULT_REPLICAS = 16


class Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    """``--help`` with the defaults shown and the descriptions kept as written."""


# a value that starts with '-' and is a number, a list or a range: -1, -.5, -1,0, -1:1:3, -inf
_NEGATIVE_VALUE = re.compile(r"^-(\d|\.\d|inf\b|nan\b)", re.IGNORECASE)


def join_negative_values(parser: argparse.ArgumentParser, argv: list[str]) -> list[str]:
    """``--flag -1,0`` → ``--flag=-1,0`` for every flag that takes a value.

    argparse reads a token that starts with '-' as a flag unless it is a plain negative number,
    so ``--ridge -1,0`` or ``--lr -1:1:3`` would be a multi-line usage error; joined, the value
    reaches the flag's own check and its one-line range message.
    """
    takes_value = set()

    def collect(p):
        for action in p._actions:
            if isinstance(action, argparse._SubParsersAction):
                for sub in action.choices.values():
                    collect(sub)
            elif action.option_strings and action.nargs != 0:
                takes_value.update(action.option_strings)

    collect(parser)
    out, i = [], 0
    while i < len(argv):
        tok = argv[i]
        if tok == "--":  # everything after it is positional
            out.extend(argv[i:])
            break
        if tok in takes_value and i + 1 < len(argv) and _NEGATIVE_VALUE.match(argv[i + 1]):
            out.append(f"{tok}={argv[i + 1]}")
            i += 2
        else:
            out.append(tok)
            i += 1
    return out


# --------------------------------------------------------------------------------------------
# The problem
# --------------------------------------------------------------------------------------------


def add_problem_args(parser: argparse.ArgumentParser, defaults: dict | None = None,
                     target_required: bool = True) -> None:
    """Problem flags: --target --p --activation --second-layer --alpha --lr --steps ..."""
    d = dict(PROBLEM_DEFAULTS, **(defaults or {}))
    g = parser.add_argument_group("problem")
    if target_required:
        g.add_argument("--target", required=True,
                       help="registered target name (see `dmft targets`)")
    g.add_argument("--p", type=int, default=d["p"], help="number of student units")
    g.add_argument("--activation", default=d["activation"],
                   help="student activation (see `dmft targets`)")
    g.add_argument("--second-layer", default=d["second_layer"],
                   help="second layer a: alternating (±1/√p), ones (1/√p) or v1,v2,... (p values)")
    g.add_argument("--alpha", type=float, default=d["alpha"], help="sample ratio n/d")
    g.add_argument("--lr", default=str(d["lr"]) if not isinstance(d["lr"], str) else d["lr"],
                   help="learning rate η, or one value per step: η0,η1,...")
    g.add_argument("--steps", type=int, default=d["steps"], help="number of GD steps T")
    g.add_argument("--ridge", type=float, default=d["ridge"], help="ridge penalty λ")
    g.add_argument("--label-noise", type=float, default=d["noise"],
                   help="label-noise variance Δ")
    g.add_argument("--schedule", default=d["schedule"],
                   help="reuse (same batch every step), fresh (new batch every step), "
                   "repeat:R (each batch used R steps in a row), b0,b1,... (batch per step), "
                   "or mini-batch SGD on one dataset: sgd:b (each sample in a step's "
                   "mini-batch with probability b, 0 < b <= 1) or epochs:B (B disjoint "
                   "mini-batches per epoch, integer B >= 1); mini-batch sums are rescaled by 1/b")
    g.add_argument("--loss", default=d.get("loss", "square"),
                   help="square ((y - f)^2/2) or logistic (log(1 + e^{-yf}), labels ±1)")
    g.add_argument("--lr-a", default=str(d.get("lr_a", 0.0)),
                   help="second-layer learning rate (0: fixed a), or one value per step")
    g.add_argument("--momentum", default=str(d.get("momentum", 0.0)),
                   help="heavy-ball momentum β in [0, 1) (0: plain GD), or one value per step")
    g.add_argument("--momentum-a", default=None,
                   help="momentum of the second layer (default: the same as --momentum)")
    g.add_argument("--nesterov", action="store_true",
                   help="Nesterov: the gradient at the look-ahead point W_t + β (W_t − W_{t−1})")
    g.add_argument("--m0", default=d["m0"],
                   help="initial overlaps m_0: p·k values row-major, or one value for all "
                   "(default 0)")


def parse_floats(name: str, text: str) -> list[float]:
    """``v`` or ``v1,v2,...`` → the list of floats (a one-line error naming ``name``)."""
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise DMFTInputError(
            f"`{name}` must be a number or comma-separated numbers; got {name}={text!r}"
        ) from None


def _per_step(name: str, text: str, steps: int):
    """One value, or one value per step (``steps`` of them)."""
    vals = parse_floats(name, text)
    if len(vals) == 1:
        return vals[0]
    if len(vals) != steps:
        raise DMFTInputError(
            f"`{name}` must have one value or steps={steps} values; got {len(vals)} values"
        )
    return vals


def _second_layer(text, p: int):
    if text in ("alternating", "ones"):
        return text
    if not any(ch.isdigit() for ch in str(text)):
        raise DMFTInputError(
            "`second_layer` must be alternating, ones or p comma-separated numbers; "
            f"got second_layer={text!r}"
        )
    vals = parse_floats("second_layer", text)
    if len(vals) != p:
        raise DMFTInputError(f"`second_layer` must have p={p} values; got {len(vals)} ({text})")
    return vals


def _m0(text, p: int, k: int):
    import numpy as np

    if text is None:
        return None
    vals = parse_floats("m0", text)
    if len(vals) == 1:
        return vals[0]
    if len(vals) == p * k:
        return np.asarray(vals).reshape(p, k)
    raise DMFTInputError(
        f"`m0` must have p·k = {p}·{k} = {p * k} values (row-major p×k) "
        f"or one value; got {len(vals)} values ({text})"
    )


def _schedule(text):
    if (text not in ("reuse", "fresh") and "," in str(text)
            and not str(text).startswith(("list:", "repeat:"))):
        try:
            return [int(v) for v in text.split(",")]
        except ValueError:
            raise DMFTInputError(
                f"`schedule` as a list must be comma-separated integers; got schedule={text!r}"
            ) from None
    return text


def problem_from_args(args):
    """Build the validated Problem from parsed flags (raises DMFTInputError naming the flag)."""
    from ..model import get_target, make_problem

    target = get_target(args.target)
    p = check_int("p", args.p, low=1, high=64)
    steps = check_int("steps", args.steps, low=1, high=100_000)
    lr = _per_step("lr", args.lr, steps)
    second = _second_layer(args.second_layer, p)
    m0 = _m0(args.m0, p, target.k)
    lr_a = _per_step("lr_a", getattr(args, "lr_a", "0"), steps)
    momentum = _per_step("momentum", getattr(args, "momentum", "0"), steps)
    raw_a = getattr(args, "momentum_a", None)
    momentum_a = None if raw_a is None else _per_step("momentum_a", raw_a, steps)
    schedule = _schedule(args.schedule)
    return make_problem(target, p=p, activation=args.activation, second_layer=second,
                        alpha=args.alpha, noise=args.label_noise, lr=lr, steps=steps,
                        ridge=args.ridge, schedule=schedule, m0=m0, lr_a=lr_a,
                        loss=getattr(args, "loss", "square"), momentum=momentum,
                        momentum_a=momentum_a, nesterov=bool(getattr(args, "nesterov", False)))


# --------------------------------------------------------------------------------------------
# The run: sizes, seed, dtype, devices, progress
# --------------------------------------------------------------------------------------------


def add_seed_arg(group, help: str = "random seed") -> None:
    group.add_argument("--seed", type=int, default=0, help=help)


def add_samples_args(group, *, samples=DEFAULT_SAMPLES,
                     samples_help: str = "effective samples N (a multiple of --replicas)",
                     seed_help: str = "random seed",
                     replicas_help: str = "independent replicas for the standard error") -> None:
    """--samples --seed --replicas of a DMFT run."""
    group.add_argument("--samples", type=int, default=samples, help=samples_help)
    add_seed_arg(group, seed_help)
    group.add_argument("--replicas", type=int, default=DEFAULT_REPLICAS, help=replicas_help)


DTYPES = ("float64", "float32")
DTYPE_HELP = ("float64 (default) or float32: faster on a GPU; the solver's float32 arithmetic "
              "stays below 5%% of one standard error (tests/test_solver.py)")


def add_dtype_arg(group) -> None:
    group.add_argument("--dtype", default="float64", help=DTYPE_HELP)


def dtype_from_args(args) -> str:
    """--dtype, checked before any compute."""
    check_choice("dtype", args.dtype, set(DTYPES))
    return args.dtype


DEVICES_HELP = ("use the first N devices of the default backend (an integer >= 1; when not "
                "given: all of them)")


def add_devices_arg(group) -> None:
    """--devices N: a string here, checked by :func:`devices_from_args` (so that a non-integer
    is a one-line error, exit code 1, like a count out of range)."""
    group.add_argument("--devices", default=None, metavar="N", help=DEVICES_HELP)


def devices_from_args(args) -> int | None:
    """--devices → ``devices=`` of solve/simulate/sweep: None (every device of the default
    backend) or an int in [1, available], checked before any compute (the range by
    ``_devices.resolve_devices``, as the library checks it)."""
    text = getattr(args, "devices", None)
    if text is None:
        return None
    from .._devices import resolve_devices
    from .._validate import show

    try:
        n = int(str(text).strip())
    except ValueError:
        import jax

        raise DMFTInputError(
            f"`devices` must be an integer in [1, {len(jax.devices())}] (a count of devices of "
            f"the default backend); got devices={show(text)}") from None
    resolve_devices(n)
    return n


def device_count(devices: int | None) -> int:
    """The number of devices a run with ``devices`` (from :func:`devices_from_args`) uses."""
    from .._devices import resolve_devices

    return len(resolve_devices(devices))


def add_progress_arg(group, help: str = "no progress bar") -> None:
    group.add_argument("--no-progress", action="store_true", help=help)


def progress_from_args(args):
    """``progress=`` of the library calls: False with --no-progress, else None (automatic)."""
    return False if getattr(args, "no_progress", False) else None


def enable_x64() -> None:
    """Entry points run in double precision: turn JAX x64 on before any array exists, and use
    the persistent compilation cache (``dmft._cache``; ``DMFT_NO_COMPILE_CACHE=1`` turns it
    off), so a second call of the same structure does not compile again."""
    import jax

    from .._cache import enable_compile_cache
    from ._guard import user_warnings

    jax.config.update("jax_enable_x64", True)
    with user_warnings():  # a damaged cache is one line `warning: ...`
        enable_compile_cache()


def print_config(title: str, problem, settings: dict) -> None:
    """The resolved problem and run settings, one ``key value`` line each."""
    print(f"{title}:")
    for key, val in problem.to_dict().items():
        if key not in ("target_formula", "qperp0"):
            print(f"  {key:<14}{json.dumps(val)}")
    for key, val in settings.items():
        print(f"  {key:<14}{json.dumps(val)}")
    sys.stdout.flush()


# --------------------------------------------------------------------------------------------
# Files: inputs, --out, --dpi, saving
# --------------------------------------------------------------------------------------------


def existing(path: str, name: str) -> str:
    """An input file that must exist (`name` is the argument named in the error)."""
    import os

    if not os.path.exists(path):
        raise DMFTInputError(f"`{name}` file not found: {path}")
    return path


def add_out_arg(group) -> None:
    group.add_argument("--out", required=True, help="output HDF5 file (.h5)")


def check_out(path: str, name: str = "out", need_bytes: int = 0) -> str:
    """--out: an .h5 name in a writable folder, not a directory, short enough, with room for
    the file and its partial twin (checked before any compute)."""
    from ..io import check_output_path

    return check_output_path(path, name=name, need_bytes=need_bytes, partial=True)


FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff",
                   ".webp", ".svgz")
DPI_RANGE = (10, 1200)  # what dmft.plot.save_figure accepts


def add_dpi_arg(group) -> None:
    group.add_argument("--dpi", type=int, default=200,
                       help=f"figure resolution, {DPI_RANGE[0]} to {DPI_RANGE[1]}")


def check_dpi(args) -> int:
    return check_int("dpi", args.dpi, low=DPI_RANGE[0], high=DPI_RANGE[1])


def check_figure_args(args) -> None:
    """--dpi in DPI_RANGE and, when given, --out a figure name matplotlib can write."""
    check_dpi(args)
    if args.out:
        from ..io import check_output_path

        check_output_path(args.out, name="out", suffixes=FIGURE_SUFFIXES)


def status_note(traj) -> str:
    """`` (status ... from step ...)`` for a run that blew up, else nothing."""
    if traj.status == "ok":
        return ""
    return f" (status {traj.status!r} from step {traj.first_bad_step}; see the warning)"


def save_or_partial(run, out: str, command_line: str | None):
    """Run ``run()``; save its Trajectory to ``out``, or the partial one on divergence.

    On divergence the partial trajectory goes to ``<stem>.partial.h5`` (never over ``out``) and
    the DivergenceError is re-raised with that path in its message.
    """
    from .. import io
    from .._result import mark_blowup

    try:
        traj = run()
    except DivergenceError as exc:
        if exc.partial is None:
            raise DivergenceError(exc.step, exc.quantity, causes=exc.causes,
                                  saved="; nothing was written") from None
        ppath = io.partial_path(out)
        before_write()
        try:
            io.save(exc.partial, ppath, command_line=command_line)
            WRITTEN.append(ppath)
        except (DMFTInputError, OSError) as save_exc:
            raise DivergenceError(
                exc.step, exc.quantity, causes=exc.causes,
                saved=f"; the partial results could NOT be saved ({one_line(save_exc)})",
            ) from None
        raise DivergenceError(exc.step, exc.quantity, path=ppath, partial=exc.partial,
                              causes=exc.causes) from None
    mark_blowup(traj, stacklevel=3)  # the simulator marks itself; the solver may not yet
    before_write()
    io.save(traj, out, command_line=command_line)
    WRITTEN.append(out)
    return traj
