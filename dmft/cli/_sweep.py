"""``dmft sweep`` and ``dmft plot-sweep``: phase diagrams from the command line.

Every numeric problem flag (``--alpha --lr --ridge --label-noise --lr-a --m0``, and
``--batch-fraction`` for b of an ``sgd:b`` schedule) takes one value,
a comma list ``v1,v2,...`` or a range ``start:stop:num[:log]`` (``num`` points, linear or
log-spaced, both ends included). A flag with more than one value is a grid axis; axes are in the
order the flags are given. Example::

    dmft sweep --target he3 --schedule repeat:2 --lr 0.05:2:16:log --alpha 1,2,3 \\
        --samples 100000 --seed 0 --out sweep.h5
    dmft plot-sweep sweep.h5 --observable m_norm --step 6 --out phase.png
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import DMFTInputError
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

# flag → (Problem field, argparse dest)
SWEEP_FLAGS = {
    "--alpha": ("alpha", "alpha"),
    "--lr": ("lr", "lr"),
    "--ridge": ("ridge", "ridge"),
    "--label-noise": ("noise", "label_noise"),
    "--lr-a": ("lr_a", "lr_a"),
    "--m0": ("m0", "m0"),
    "--batch-fraction": ("batch_fraction", "batch_fraction"),
}


def parse_values(flag: str, text) -> list[float]:
    """``v``, ``v1,v2,...`` or ``start:stop:num[:log]`` → the list of values."""
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
        if len(parts) == 4:
            if lo <= 0 or hi <= 0:
                raise DMFTInputError(usage)
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
    for action in p._actions:  # numeric flags take lists and ranges here
        if action.option_strings and action.option_strings[0] in SWEEP_FLAGS:
            action.type = str
            action.help = (action.help or "") + "; a list v1,v2,... or start:stop:num[:log]"
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
    add_devices_arg(r)
    add_progress_arg(r)
    add_out_arg(r)
    p.set_defaults(func=cmd_sweep)

    p = subparsers.add_parser("plot-sweep", help="phase diagram of a sweep file",
                              formatter_class=Formatter)
    p.add_argument("file", help="a sweep file written by `dmft sweep`")
    p.add_argument("--observable", default="m_norm",
                   help="m_norm, test_error, train_loss")
    p.add_argument("--step", type=int, default=None, help="GD step (default: the last)")
    add_dpi_arg(p)
    p.add_argument("--out", required=True, help="figure file (.png, .pdf, .svg)")
    p.set_defaults(func=cmd_plot_sweep)


def _axes_from_args(args, argv_order):
    """Split the numeric flags into the base problem (one value) and the grid axes."""
    over, base = {}, {}
    for flag, (field, dest) in sorted(SWEEP_FLAGS.items(),
                                      key=lambda kv: argv_order.get(kv[0], 1 << 30)):
        raw = getattr(args, dest, None)
        if raw is None:
            continue
        vals = parse_values(flag, raw)
        if len(vals) > 1:
            over[field] = vals
            base[dest] = str(vals[0])
        else:
            base[dest] = str(vals[0])
    return over, base


def cmd_sweep(args) -> int:
    from .._sweep import sweep
    from ..io import save_sweep

    out = check_out(args.out)
    order = {tok.split("=")[0]: i for i, tok in enumerate(args.argv)}
    over, base = _axes_from_args(args, order)
    if not over:
        raise DMFTInputError(
            "`dmft sweep` needs at least one axis: give one of "
            f"{', '.join(SWEEP_FLAGS)} two or more values (v1,v2 or start:stop:num[:log])")
    if "batch_fraction" in base:  # b is part of the schedule string: sgd:b
        args.schedule = f"sgd:{base.pop('batch_fraction')}"
    for dest, val in base.items():
        setattr(args, dest, val)
    problem = problem_from_args(args)
    devices = devices_from_args(args)
    shape = " x ".join(f"{n}[{len(v)}]" for n, v in over.items())
    print(f"dmft sweep: {problem.target.name}, {problem.schedule}, T={problem.steps}, "
          f"grid {shape} = {int(np.prod([len(v) for v in over.values()]))} points, "
          f"method {args.method}")
    res = sweep(problem, over, args.samples, seed=args.seed, replicas=args.replicas,
                response=args.response, dtype=args.dtype, progress=progress_from_args(args),
                method=args.method, d=args.d, seeds=args.seeds, grid_batch=args.grid_batch,
                devices=devices)
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
    if args.step is not None and not 0 <= args.step < len(res.step):
        raise DMFTInputError(f"`--step` must be an integer in [0, {len(res.step) - 1}]; got "
                             f"--step {args.step}")
    if len(res.axes) > 2:
        raise DMFTInputError(f"plot-sweep draws one or two axes; {args.file} has "
                             f"{len(res.axes)} ({', '.join(res.axes)})")
    fig = plot_sweep(res, args.observable, args.step)
    save_figure(fig, args.out, dpi=dpi)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {args.out}")
    return 0
