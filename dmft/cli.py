"""The ``dmft`` command line: solve, simulate, compare, targets, inspect.

Exit codes: 0 success; 1 a user error or a diverged run, reported as ONE line ``error: ...`` on
stderr (no traceback); 2 a command-line usage error (argparse). ``compare --strict`` returns 3
when the verdict fails.

Examples::

    dmft solve --target tanh_he3 --samples 200000 --out runs/dmft.h5
    dmft simulate --target tanh_he3 --d 2000 --seeds 16 --out runs/sim.h5
    dmft compare runs/dmft.h5 runs/sim.h5 --out figures/tanh_he3.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import shlex
import sys
import warnings

from ._checks import DivergenceError, DMFTInputError, check_choice, check_int

PROBLEM_DEFAULTS = dict(p=2, activation="relu", second_layer="alternating", alpha=3.0, lr=0.2,
                        steps=6, ridge=0.0, noise=0.0, schedule="reuse", m0=None)
DEFAULT_SAMPLES = 200_000
DEFAULT_D = 2000
DEFAULT_SEEDS = 16


# --------------------------------------------------------------------------------------------
# Shared argparse pieces (also used by dmft.runner for the solvers/ scripts)
# --------------------------------------------------------------------------------------------


class _Formatter(argparse.ArgumentDefaultsHelpFormatter, argparse.RawDescriptionHelpFormatter):
    pass


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
    g.add_argument("--m0", default=d["m0"],
                   help="initial overlaps m_0: p·k values row-major, or one value for all "
                   "(default 0)")


def _floats(name: str, text: str) -> list[float]:
    try:
        return [float(v) for v in str(text).split(",")]
    except ValueError:
        raise DMFTInputError(
            f"`{name}` must be a number or comma-separated numbers; got {name}={text!r}"
        ) from None


def problem_from_args(args):
    """Build the validated Problem from parsed flags (raises DMFTInputError naming the flag)."""
    import numpy as np

    from .problem import get_target, make_problem

    target = get_target(args.target)
    p = check_int("p", args.p, low=1, high=64)
    steps = check_int("steps", args.steps, low=1, high=100_000)
    lr = _floats("lr", args.lr)
    lr = lr[0] if len(lr) == 1 else lr
    if isinstance(lr, list) and len(lr) != steps:
        raise DMFTInputError(
            f"`lr` must have one value or steps={steps} values; got {len(lr)} values"
        )
    second = args.second_layer
    if second not in ("alternating", "ones"):
        if not any(ch.isdigit() for ch in str(second)):
            raise DMFTInputError(
                "`second_layer` must be alternating, ones or p comma-separated numbers; "
                f"got second_layer={second!r}"
            )
        vals = _floats("second_layer", second)
        if len(vals) != p:
            raise DMFTInputError(
                f"`second_layer` must have p={p} values; got {len(vals)} ({second})"
            )
        second = vals
    m0 = None
    if args.m0 is not None:
        vals = _floats("m0", args.m0)
        if len(vals) == 1:
            m0 = vals[0]
        elif len(vals) == p * target.k:
            m0 = np.asarray(vals).reshape(p, target.k)
        else:
            raise DMFTInputError(
                f"`m0` must have p·k = {p}·{target.k} = {p * target.k} values (row-major p×k) "
                f"or one value; got {len(vals)} values ({args.m0})"
            )
    lr_a = _floats("lr_a", getattr(args, "lr_a", "0"))
    lr_a = lr_a[0] if len(lr_a) == 1 else lr_a
    if isinstance(lr_a, list) and len(lr_a) != steps:
        raise DMFTInputError(
            f"`lr_a` must have one value or steps={steps} values; got {len(lr_a)} values"
        )
    schedule = args.schedule
    if schedule not in ("reuse", "fresh") and "," in str(schedule):
        try:
            schedule = [int(v) for v in schedule.split(",")]
        except ValueError:
            raise DMFTInputError(
                f"`schedule` as a list must be comma-separated integers; got schedule={schedule!r}"
            ) from None
    return make_problem(target, p=p, activation=args.activation, second_layer=second,
                        alpha=args.alpha, noise=args.label_noise, lr=lr, steps=steps,
                        ridge=args.ridge, schedule=schedule, m0=m0, lr_a=lr_a,
                        loss=getattr(args, "loss", "square"))


DTYPES = ("float64", "float32")
DTYPE_HELP = ("float64 (default) or float32: faster on a GPU; the solver's float32 arithmetic "
              "stays below 5%% of one standard error (tests/test_solver.py)")


def enable_x64() -> None:
    """Entry points run in double precision: turn JAX x64 on before any array exists."""
    import jax

    jax.config.update("jax_enable_x64", True)


def _progress(args):
    return False if getattr(args, "no_progress", False) else None


def _print_config(title: str, problem, settings: dict) -> None:
    print(f"{title}:")
    for key, val in problem.to_dict().items():
        if key not in ("target_formula", "qperp0"):
            print(f"  {key:<14}{json.dumps(val)}")
    for key, val in settings.items():
        print(f"  {key:<14}{json.dumps(val)}")
    sys.stdout.flush()


def _check_out(path: str, name: str = "out") -> str:
    if not path.endswith((".h5", ".hdf5")):
        raise DMFTInputError(f"`{name}` must be an .h5 file name; got {name}={path!r}")
    return path


def save_or_partial(run, out: str, command_line: str | None):
    """Run ``run()``; save its Trajectory to ``out``, or the partial one on divergence.

    On divergence the partial trajectory goes to ``<stem>.partial.h5`` (never over ``out``) and
    the DivergenceError is re-raised with that path in its message.
    """
    from . import io

    try:
        traj = run()
    except DivergenceError as exc:
        if exc.partial is None:
            raise
        ppath = io.partial_path(out)
        io.save(exc.partial, ppath, command_line=command_line)
        raise DivergenceError(exc.step, exc.quantity, path=ppath, partial=exc.partial) from None
    io.save(traj, out, command_line=command_line)
    return traj


# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------


def _cmd_solve(args) -> int:
    from .solver import solve

    problem = problem_from_args(args)
    out = _check_out(args.out)
    samples = check_int("samples", args.samples, low=2)
    check_int("seed", args.seed, low=0)
    check_choice("dtype", args.dtype, set(DTYPES))
    settings = dict(samples=samples, seed=args.seed, replicas=args.replicas,
                    chunk_size=args.chunk_size, response=args.response, dtype=args.dtype)
    _print_config("dmft solve", problem, settings)
    traj = save_or_partial(
        lambda: solve(problem, samples, seed=args.seed, replicas=args.replicas,
                      chunk_size=args.chunk_size, response=args.response,
                      dtype=args.dtype, progress=_progress(args)),
        out, args.command_line)
    print(f"wall time: {traj.settings.get('wall_time_s', float('nan')):.2f} s")
    print(f"wrote {out}")
    return 0


def _cmd_simulate(args) -> int:
    problem = problem_from_args(args)
    out = _check_out(args.out)
    d = check_int("d", args.d, low=1)
    seeds = check_int("seeds", args.seeds, low=1)
    check_int("seed", args.seed, low=0)
    if args.seed_batch is not None:
        check_int("seed_batch", args.seed_batch, low=1)
    if args.test_error not in ("exact", "sample"):
        raise DMFTInputError(
            f"`test_error` must be one of ['exact', 'sample']; got test_error={args.test_error!r}"
        )
    from .simulate import simulate

    check_choice("dtype", args.dtype, set(DTYPES))
    settings = dict(d=d, seeds=seeds, seed=args.seed, seed_batch=args.seed_batch,
                    test_error=args.test_error, dtype=args.dtype)
    _print_config("dmft simulate", problem, settings)
    save_or_partial(
        lambda: simulate(problem, d, seeds, seed=args.seed, seed_batch=args.seed_batch,
                         test_error=args.test_error, dtype=args.dtype,
                         progress=_progress(args)),
        out, args.command_line)
    print(f"wrote {out}")
    return 0


def _cmd_compare(args) -> int:
    from . import io
    from .compare import zscore_table

    theory = io.load(_existing(args.theory, "theory"))
    sim = io.load(_existing(args.sim, "sim"))
    table = zscore_table(theory, sim, threshold=args.threshold, sys_error=args.sys_error,
                         check_problem=not args.allow_different)
    print(table)
    if args.out:
        from .plot import plot_comparison, save_figure

        fig = plot_comparison(theory, sim)
        save_figure(fig, args.out, dpi=args.dpi)
        import matplotlib.pyplot as plt

        plt.close(fig)
        print(f"wrote {args.out}")
    return 3 if (args.strict and not table.passed) else 0


def _existing(path: str, name: str) -> str:
    if not os.path.exists(path):
        raise DMFTInputError(f"`{name}` file not found: {path}")
    return path


def _cmd_targets(args) -> int:
    from .problem import ACTIVATIONS, TARGETS

    print("targets (g* acting on z = h* ~ N(0, I_k)):")
    for name, t in TARGETS.items():
        print(f"  {name:<14} k={t.k}  g*(z) = {t.formula}")
    print("activations:")
    for name, a in ACTIVATIONS.items():
        smooth = "" if a.smooth else "  (non-smooth: use --response stein)"
        print(f"  {name:<14} σ(h) = {a.formula}{smooth}")
    return 0


def _cmd_inspect(args) -> int:
    from . import io

    print(io.describe(_existing(args.file, "file")))
    return 0


# --------------------------------------------------------------------------------------------
# Parser and main
# --------------------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="dmft", formatter_class=_Formatter,
        description="DMFT of multi-pass GD on two-layer networks, and a large-d simulator.",
        epilog=__doc__.split("Examples::", 1)[1] if "Examples::" in __doc__ else None,
    )
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    p = sub.add_parser("solve", help="solve the DMFT and write an HDF5 file",
                       formatter_class=_Formatter)
    add_problem_args(p)
    r = p.add_argument_group("run")
    r.add_argument("--samples", type=int, default=DEFAULT_SAMPLES,
                   help="effective samples N (a multiple of --replicas)")
    r.add_argument("--seed", type=int, default=0, help="random seed")
    r.add_argument("--replicas", type=int, default=16,
                   help="independent replicas for the standard error")
    r.add_argument("--chunk-size", type=int, default=None,
                   help="samples per chunk inside a replica (default: the whole replica, "
                        "fastest; smaller bounds the per-step temporaries)")
    r.add_argument("--response", default="stein", help="response estimator: stein or pathwise")
    r.add_argument("--dtype", default="float64", help=DTYPE_HELP)
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--out", required=True, help="output HDF5 file (.h5)")
    p.set_defaults(func=_cmd_solve)

    p = sub.add_parser("simulate", help="simulate GD at finite d and write an HDF5 file",
                       formatter_class=_Formatter)
    add_problem_args(p)
    r = p.add_argument_group("run")
    r.add_argument("--d", type=int, default=DEFAULT_D, help="input dimension d (n = α d)")
    r.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="independent seeds")
    r.add_argument("--seed", type=int, default=0, help="random seed")
    r.add_argument("--seed-batch", type=int, default=None,
                   help="seeds run at once (memory); default all")
    r.add_argument("--dtype", default="float64", help=DTYPE_HELP)
    r.add_argument("--test-error", default="exact",
                   help="exact (quadrature from m, Q) or sample (fresh test set)")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--out", required=True, help="output HDF5 file (.h5)")
    p.set_defaults(func=_cmd_simulate)

    p = sub.add_parser("compare", help="z-scores of theory vs simulation, verdict and figure",
                       formatter_class=_Formatter)
    p.add_argument("theory", help="theory file (e.g. from `dmft solve`)")
    p.add_argument("sim", help="simulation file (e.g. from `dmft simulate`)")
    p.add_argument("--out", default=None, help="figure file (.png, .pdf, ...)")
    p.add_argument("--threshold", type=float, default=4.0, help="pass if max |z| < threshold")
    p.add_argument("--sys-error", type=float, default=0.0,
                   help="absolute finite-d allowance added in quadrature to the SE")
    p.add_argument("--allow-different", action="store_true",
                   help="compare runs of different problems")
    p.add_argument("--strict", action="store_true", help="exit code 3 when the verdict fails")
    p.add_argument("--dpi", type=int, default=200, help="figure resolution")
    p.set_defaults(func=_cmd_compare)

    p = sub.add_parser("targets", help="list targets and activations", formatter_class=_Formatter)
    p.set_defaults(func=_cmd_targets)

    p = sub.add_parser("inspect", help="print a file's version, kind, config and datasets",
                       formatter_class=_Formatter)
    p.add_argument("file", help="an HDF5 file written by dmft")
    p.set_defaults(func=_cmd_inspect)
    return parser


def _one_line(msg: str) -> str:
    return " ".join(str(msg).split())


@contextlib.contextmanager
def user_warnings():
    """Show warnings as one line ``warning: ...`` on stderr, whatever the warning filters say."""
    def show(message, category, filename, lineno, file=None, line=None):
        print(f"warning: {_one_line(message)}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = show
        yield


def run_guarded(fn, *args) -> int:
    """Call ``fn(*args) -> int``; turn user errors and divergence into exit code 1 + one line."""
    try:
        with user_warnings():
            return fn(*args)
    except (DMFTInputError, DivergenceError, FileNotFoundError, IsADirectoryError,
            PermissionError) as exc:
        sys.stdout.flush()
        print(f"error: {_one_line(exc)}", file=sys.stderr)
        return 1


def main(argv=None) -> int:
    """Entry point of the ``dmft`` console script."""
    enable_x64()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    args.command_line = "dmft " + shlex.join(argv)
    return run_guarded(args.func, args)


if __name__ == "__main__":
    raise SystemExit(main())
