"""``dmft sweep`` and ``dmft plot-sweep``: phase diagrams from the command line.

Every numeric problem flag (``--alpha --lr --ridge --label-noise --lr-a --m0 --momentum
--momentum-a``, and
``--batch-fraction`` for b of an ``sgd:b`` schedule) takes one value,
a comma list ``v1,v2,...`` or a range ``start:stop:num[:log]`` (``num`` points, linear or
log-spaced, both ends included). A flag with more than one value is a grid axis; axes are in the
order the flags are given. The grid (the product of the axes' lengths) may have at most
``--max-points`` points (default 10000), checked before anything is computed. The structural
fields (``--steps --p --activation --loss --target``) change the compiled program and cannot be
axes: run one sweep per value (e.g. a shell loop). Example::

    dmft sweep --target he3 --schedule repeat:2 --lr 0.05:2:16:log --alpha 1,2,3 \\
        --samples 100000 --seed 0 --out sweep.h5
    dmft plot-sweep sweep.h5 --observable m_norm --step 6 --out phase.png
"""

from __future__ import annotations

import math
import re

import numpy as np

from .._errors import DMFTInputError
from .._validate import check_int
from ._common import (
    DEFAULT_SAMPLES,
    Formatter,
    add_devices_arg,
    add_dpi_arg,
    add_dtype_arg,
    add_out_arg,
    add_problem_args,
    add_progress_arg,
    add_samples_args,
    check_dpi,
    check_out,
    devices_from_args,
    existing,
    problem_from_args,
    progress_from_args,
)
from ._guard import before_write

# flag → (Problem field, argparse dest)
SWEEP_FLAGS = {
    "--alpha": ("alpha", "alpha"),
    "--lr": ("lr", "lr"),
    "--ridge": ("ridge", "ridge"),
    "--label-noise": ("noise", "label_noise"),
    "--lr-a": ("lr_a", "lr_a"),
    "--m0": ("m0", "m0"),
    "--batch-fraction": ("batch_fraction", "batch_fraction"),
    "--momentum": ("momentum", "momentum"),
    "--momentum-a": ("momentum_a", "momentum_a"),
}
# problem flags that change the compiled program: one value per sweep (flag → argparse dest)
STRUCTURAL_FLAGS = {"--steps": "steps", "--p": "p", "--activation": "activation",
                    "--loss": "loss", "--target": "target"}
MAX_POINTS = 10_000  # default of --max-points


def _too_many(what: str, n: int, max_points: int) -> DMFTInputError:
    return DMFTInputError(
        f"{what} = {n} points, more than the limit --max-points={max_points}; use fewer "
        f"values, or pass --max-points {n} to run it anyway")


def parse_values(flag: str, text, max_points: int = MAX_POINTS) -> list[float]:
    """``v``, ``v1,v2,...`` or ``start:stop:num[:log]`` → the list of values (a range of more
    than ``max_points`` points is refused before it is built)."""
    text = str(text).strip()
    if ":" in text:
        parts = text.split(":")
        usage = (f"`{flag}` range must be start:stop:num or start:stop:num:log with num an "
                 f"integer >= 2 (and start, stop > 0 for log); got {flag} {text}")
        if len(parts) not in (3, 4) or (len(parts) == 4 and parts[3] != "log"):
            raise DMFTInputError(usage)
        try:
            lo, hi, num = float(parts[0]), float(parts[1]), int(parts[2])
        except ValueError:
            raise DMFTInputError(usage) from None
        if num < 2 or not (math.isfinite(lo) and math.isfinite(hi)):
            raise DMFTInputError(usage)
        if num > max_points:
            raise _too_many(f"`{flag}` range {text} asks for num", num, max_points)
        if len(parts) == 4:
            if lo <= 0 or hi <= 0:
                raise DMFTInputError(f"`{flag}` log range start:stop:num:log needs start > 0 "
                                     f"and stop > 0; got {flag} {text}")
            return [float(v) for v in np.geomspace(lo, hi, num)]
        return [float(v) for v in np.linspace(lo, hi, num)]
    try:
        vals = [float(v) for v in text.split(",")]
    except ValueError:
        raise DMFTInputError(
            f"`{flag}` must be a number, a comma list v1,v2,... or a range "
            f"start:stop:num[:log]; got {flag} {text}") from None
    if not all(math.isfinite(v) for v in vals):
        raise DMFTInputError(f"`{flag}` values must be finite; got {flag} {text}")
    return vals


def add_parser(subparsers) -> None:
    """Register ``sweep`` and ``plot-sweep`` on the ``dmft`` subparsers."""
    p = subparsers.add_parser("sweep", help="DMFT (or simulation) on a grid of hyper-parameters",
                              formatter_class=Formatter, description=__doc__,
                              epilog="Axis flags: " + " ".join(SWEEP_FLAGS))
    add_problem_args(p)
    for action in p._actions:
        if action.option_strings and action.option_strings[0] in SWEEP_FLAGS:
            # numeric flags take lists and ranges here
            action.type = str
            action.help = (action.help or "") + "; a list v1,v2,... or start:stop:num[:log]"
        elif action.option_strings and action.option_strings[0] in STRUCTURAL_FLAGS:
            # read as text so that a list is refused with its own message (not argparse's)
            action.type = str
            action.help = (action.help or "") + "; one value (structural: not an axis)"
    p.add_argument("--batch-fraction", default=None, type=str,
                   help="b of the schedule sgd:b as an axis (sets --schedule sgd:b); a value, "
                   "a list v1,v2,... or start:stop:num[:log], each in (0, 1]")
    r = p.add_argument_group("run")
    add_samples_args(r, samples=DEFAULT_SAMPLES,
                     samples_help="effective samples N per grid point",
                     seed_help="random seed (the same for every point)",
                     replicas_help="replicas for the standard error")
    r.add_argument("--response", default="stein", help="stein or pathwise")
    add_dtype_arg(r)
    r.add_argument("--method", default="dmft", help="dmft or simulate")
    r.add_argument("--d", type=int, default=None, help="dimension (--method simulate)")
    r.add_argument("--seeds", type=int, default=16, help="seeds (--method simulate)")
    r.add_argument("--grid-batch", type=int, default=None,
                   help="points solved at once (default: as many as fit in memory)")
    r.add_argument("--max-points", type=int, default=MAX_POINTS,
                   help="largest grid allowed (the product of the axes' lengths)")
    add_devices_arg(r)
    add_progress_arg(r)
    add_out_arg(r)
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("plot-sweep", help="phase diagram of a sweep file",
                              formatter_class=Formatter)
    p.add_argument("file", help="a sweep file written by `dmft sweep`")
    p.add_argument("--observable", default="m_norm",
                   help="m_norm, test_error, train_loss")
    p.add_argument("--step", default=None,
                   help="GD step, an integer in [0, T] (default: the last, T)")
    add_dpi_arg(p)
    p.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_plot_sweep)


def _structural_from_args(args) -> None:
    """--steps --p --activation --loss --target: one value each (they change the compiled
    program, so a sweep cannot vary them); --steps and --p become ints."""
    for flag, dest in STRUCTURAL_FLAGS.items():
        text = getattr(args, dest, None)
        if text is None:
            continue
        text = str(text).strip()
        if "," in text or (":" in text and dest in ("steps", "p")):
            values = " ".join(text.split(",")) if ":" not in text else "V1 V2"
            raise DMFTInputError(
                f"`{flag}` is structural (it changes the compiled program), so it cannot be a "
                f"sweep axis; got {flag} {text}; run one sweep per value, e.g. "
                f"`for v in {values}; do dmft sweep ... {flag} $v --out sweep_$v.h5; done`")
        if dest in ("steps", "p"):
            try:
                setattr(args, dest, int(text))
            except ValueError:
                raise DMFTInputError(
                    f"`{flag}` must be an integer; got {flag}={text!r}") from None


def _axes_from_args(args, argv_order, max_points: int = MAX_POINTS):
    """Split the numeric flags into the base problem (one value) and the grid axes; refuse a
    grid of more than ``max_points`` points."""
    over, base = {}, {}
    for flag, (field, dest) in sorted(SWEEP_FLAGS.items(),
                                      key=lambda kv: argv_order.get(kv[0], 1 << 30)):
        raw = getattr(args, dest, None)
        if raw is None:
            continue
        vals = parse_values(flag, raw, max_points)
        if len(vals) > 1:
            over[field] = vals
        base[dest] = vals[0]
    n = math.prod(len(v) for v in over.values())
    if n > max_points:
        shape = " x ".join(f"{name}[{len(v)}]" for name, v in over.items())
        raise _too_many(f"the grid {shape}", n, max_points)
    return over, base


def _check_axis_values(problem, over: dict) -> None:
    """Every value of every axis is a valid value of its field (one line naming the flag)."""
    from .._sweep import grid_problems

    flags = {field: flag for flag, (field, _) in SWEEP_FLAGS.items()}
    for field, vals in over.items():
        for v in vals:
            try:
                grid_problems(problem, {field: [v]})
            except DMFTInputError as exc:
                msg = re.sub(r"^grid point \([^)]*\): ", "", str(exc))
                # a scalar axis value
                msg = re.sub(r"\b(lr|lr_a|momentum|momentum_a)\[0\]", r"\1", msg)
                raise DMFTInputError(
                    f"`{flags[field]}` axis value {v:g} is not allowed: {msg}") from None


def cmd_sweep(args) -> int:
    from .._sweep import sweep
    from ..io import save_sweep

    out = check_out(args.out)
    max_points = check_int("max_points", args.max_points, low=1)
    _structural_from_args(args)
    order = {tok.split("=")[0]: i for i, tok in enumerate(args.argv)}
    over, base = _axes_from_args(args, order, max_points)
    if not over:
        raise DMFTInputError(
            "`dmft sweep` needs at least one axis: give one of "
            f"{', '.join(SWEEP_FLAGS)} two or more values (v1,v2 or start:stop:num[:log])")
    if "batch_fraction" in base:  # b is part of the schedule string: sgd:b
        args.schedule = f"sgd:{base.pop('batch_fraction')}"
    for dest, val in base.items():
        setattr(args, dest, val)
    problem = problem_from_args(args)
    _check_axis_values(problem, over)
    devices = devices_from_args(args)
    shape = " x ".join(f"{n}[{len(v)}]" for n, v in over.items())
    print(f"dmft sweep: {problem.target.name}, {problem.schedule}, T={problem.steps}, "
          f"grid {shape} = {int(np.prod([len(v) for v in over.values()]))} points, "
          f"method {args.method}")
    res = sweep(problem, over, args.samples, seed=args.seed, replicas=args.replicas,
                response=args.response, dtype=args.dtype, progress=progress_from_args(args),
                method=args.method, d=args.d, seeds=args.seeds, grid_batch=args.grid_batch,
                devices=devices)
    before_write()
    save_sweep(res, out, command_line=args.command_line)
    T = len(res.step) - 1
    est = res.observable("m_norm", T)
    flat_v, flat_e = est.value.ravel(), est.error.ravel()
    print(f"|m_T| over the grid: min {np.nanmin(flat_v):.4f}, max {np.nanmax(flat_v):.4f}, "
          f"largest SE {np.nanmax(flat_e):.4f}; diverged points: "
          f"{int(np.sum(res.status != 'ok'))}")
    print(f"wall time: {res.settings['wall_time_s']:.2f} s")
    print(f"wrote {out}")
    return 0


def cmd_plot_sweep(args) -> int:
    from ..io import load_sweep
    from ..plot import plot_sweep, save_figure

    dpi = check_dpi(args)
    if not str(args.out).lower().endswith((".png", ".pdf", ".svg")):
        raise DMFTInputError(f"`--out` must end in .png, .pdf or .svg; got --out {args.out}")
    res = load_sweep(existing(args.file, "file"))
    if args.observable not in ("m_norm", "test_error", "train_loss"):
        raise DMFTInputError("`--observable` must be one of ['m_norm', 'test_error', "
                             f"'train_loss']; got --observable {args.observable}")
    step = None
    if args.step is not None:
        try:
            step = int(str(args.step).strip())
        except ValueError:
            step = -1
        if not 0 <= step < len(res.step):
            raise DMFTInputError(f"`--step` must be an integer in [0, {len(res.step) - 1}] "
                                 f"(a GD step of {args.file}); got --step {args.step}")
    if len(res.axes) > 2:
        raise DMFTInputError(f"plot-sweep draws one or two axes; {args.file} has "
                             f"{len(res.axes)} ({', '.join(res.axes)})")
    fig = plot_sweep(res, args.observable, step)
    before_write()
    save_figure(fig, args.out, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
