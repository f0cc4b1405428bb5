"""The ``dmft`` command line: solve, simulate, sweep, plot-sweep, compare, features, targets,
inspect.

Exit codes: 0 success; 1 a user error or a diverged run, reported as ONE line ``error: ...`` on
stderr (no traceback) that names the flag, the value and what is allowed, and says what was
saved (an unexpected exception is also one line, exit 1; ``DMFT_TRACEBACK=1`` shows its
traceback); 2 a command-line usage error (argparse); 130 interrupted (Ctrl-C), with one line
saying that nothing was written. ``compare --strict`` returns 3 when the verdict fails. Every input,
``--out`` included (a writable folder, not a directory, a name that fits, free space), is checked
before any compute.

Examples::

    dmft solve --target tanh_he3 --samples 200000 --out runs/dmft.h5
    dmft simulate --target tanh_he3 --d 2000 --seeds 16 --out runs/sim.h5
    dmft compare runs/dmft.h5 runs/sim.h5 --out figures/tanh_he3.png
    dmft features --target tanh_he3 --d 500 --seeds 8 --out runs/features.h5 --figure f.png
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import re
import shlex
import sys
import warnings

from .._errors import DivergenceError, DMFTInputError
from .._validate import check_choice, check_int

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

    from ..model._problem import make_problem
    from ..model._targets import get_target

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
    if (schedule not in ("reuse", "fresh") and "," in str(schedule)
            and not str(schedule).startswith(("list:", "repeat:"))):
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


def enable_x64() -> None:
    """Entry points run in double precision: turn JAX x64 on before any array exists, and use
    the persistent compilation cache (``dmft._cache``; ``DMFT_NO_COMPILE_CACHE=1`` turns it
    off), so a second call of the same structure does not compile again."""
    import jax

    from .._cache import enable_compile_cache

    jax.config.update("jax_enable_x64", True)
    enable_compile_cache()


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


def _check_out(path: str, name: str = "out", need_bytes: int = 0) -> str:
    """--out: an .h5 name in a writable folder, not a directory, short enough, with room for
    the file and its partial twin (checked before any compute)."""
    from ..io import check_output_path

    return check_output_path(path, name=name, need_bytes=need_bytes, partial=True)


FIGURE_SUFFIXES = (".png", ".pdf", ".svg", ".jpg", ".jpeg", ".eps", ".ps", ".tif", ".tiff",
                   ".webp", ".svgz")
DPI_RANGE = (10, 1200)


def _check_figure_args(args) -> None:
    """compare/runner: --out a figure name matplotlib can write, --dpi in DPI_RANGE."""
    check_int("dpi", args.dpi, low=DPI_RANGE[0], high=DPI_RANGE[1])
    if args.out:
        from ..io import check_output_path

        check_output_path(args.out, name="out", suffixes=FIGURE_SUFFIXES)


_WRITTEN: list[str] = []  # files written by the running command (for the Ctrl-C message)


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
        try:
            io.save(exc.partial, ppath, command_line=command_line)
            _WRITTEN.append(ppath)
        except (DMFTInputError, OSError) as save_exc:
            raise DivergenceError(
                exc.step, exc.quantity, causes=exc.causes,
                saved=f"; the partial results could NOT be saved ({_one_line(save_exc)})",
            ) from None
        raise DivergenceError(exc.step, exc.quantity, path=ppath, partial=exc.partial,
                              causes=exc.causes) from None
    mark_blowup(traj, stacklevel=3)  # the simulator marks itself; the solver may not yet
    io.save(traj, out, command_line=command_line)
    _WRITTEN.append(out)
    return traj


# --------------------------------------------------------------------------------------------
# Subcommands
# --------------------------------------------------------------------------------------------


def _cmd_solve(args) -> int:
    from ..solver import solve

    problem = problem_from_args(args)
    samples = check_int("samples", args.samples, low=2)
    check_int("seed", args.seed, low=0)
    check_choice("dtype", args.dtype, set(DTYPES))
    devices = devices_from_args(args)
    from ..io import estimate_file_bytes

    out = _check_out(args.out, need_bytes=estimate_file_bytes("dmft", problem.steps, problem.p,
                                                              problem.k))
    settings = dict(samples=samples, seed=args.seed, replicas=args.replicas,
                    chunk_size=args.chunk_size, response=args.response, dtype=args.dtype,
                    devices=device_count(devices))
    _print_config("dmft solve", problem, settings)
    traj = save_or_partial(
        lambda: solve(problem, samples, seed=args.seed, replicas=args.replicas,
                      chunk_size=args.chunk_size, response=args.response,
                      dtype=args.dtype, progress=_progress(args), devices=devices),
        out, args.command_line)
    print(f"wall time: {traj.settings.get('wall_time_s', float('nan')):.2f} s")
    print(f"wrote {out}" + _status_note(traj))
    return 0


def _status_note(traj) -> str:
    if traj.status == "ok":
        return ""
    return f" (status {traj.status!r} from step {traj.first_bad_step}; see the warning)"


def _cmd_simulate(args) -> int:
    problem = problem_from_args(args)
    d = check_int("d", args.d, low=1)
    seeds = check_int("seeds", args.seeds, low=1)
    from ..io import estimate_file_bytes

    out = _check_out(args.out, need_bytes=estimate_file_bytes(
        "simulation", problem.steps, problem.p, problem.k, seeds))
    check_int("seed", args.seed, low=0)
    if args.seed_batch is not None:
        check_int("seed_batch", args.seed_batch, low=1)
    if args.test_error not in ("exact", "sample"):
        raise DMFTInputError(
            f"`test_error` must be one of ['exact', 'sample']; got test_error={args.test_error!r}"
        )
    from ..simulator._simulate import simulate

    check_choice("dtype", args.dtype, set(DTYPES))
    devices = devices_from_args(args)
    settings = dict(d=d, seeds=seeds, seed=args.seed, seed_batch=args.seed_batch,
                    test_error=args.test_error, dtype=args.dtype, devices=device_count(devices))
    _print_config("dmft simulate", problem, settings)
    traj = save_or_partial(
        lambda: simulate(problem, d, seeds, seed=args.seed, seed_batch=args.seed_batch,
                         test_error=args.test_error, dtype=args.dtype,
                         progress=_progress(args), devices=devices),
        out, args.command_line)
    print(f"wrote {out}" + _status_note(traj))
    return 0


def _cmd_compare(args) -> int:
    from .. import io
    from .._validate import check_real
    from ..compare import zscore_table

    check_real("threshold", args.threshold, low=0.0, low_open=True)
    check_real("sys_error", args.sys_error, low=0.0)
    _check_figure_args(args)
    theory = io.load(_existing(args.theory, "theory"))
    sim = io.load(_existing(args.sim, "sim"))
    table = zscore_table(theory, sim, threshold=args.threshold, sys_error=args.sys_error,
                         check_problem=not args.allow_different,
                         allow_flag="--allow-different")
    print(table)
    if args.out:
        from ..plot import plot_comparison, save_figure

        fig = plot_comparison(theory, sim)
        import matplotlib.pyplot as plt

        try:
            save_figure(fig, args.out, dpi=args.dpi)
        except (ValueError, OSError, RuntimeError) as exc:
            raise DMFTInputError(
                f"cannot write the figure --out={args.out!r}: {_one_line(exc)}; nothing was "
                "written (the z-table above is complete)"
            ) from None
        finally:
            plt.close(fig)
        print(f"wrote {args.out}")
    return 3 if (args.strict and not table.passed) else 0


def _cmd_features(args) -> int:
    """``dmft features``: wide network after giant step(s); spectra and ridge readout."""
    from .. import io
    from ..features._simulate import FeaturesConfig, simulate_features

    out = _check_out(args.out)
    check_int("seeds", args.seeds, low=1)
    check_int("seed", args.seed, low=0)
    ridges = _floats("ridges", args.ridges)
    kw = dict(target=args.target, activation=args.activation, d=args.d, kappa=args.kappa,
              alpha0=args.alpha0, alpha1=args.alpha1, lr=args.lr, lr_scaling=args.lr_scaling,
              steps=args.steps, batch=args.batch, ridges=tuple(ridges), noise=args.label_noise,
              spike_rank=args.spike_rank, n_test=args.n_test)
    if args.quick:
        kw.update(d=min(args.d, 64), n_test=min(args.n_test or 256, 256))
        args.seeds = min(args.seeds, 2)
    config = FeaturesConfig(**kw)
    print("dmft features:")
    for key, val in config.to_dict().items():
        print(f"  {key:<15}{json.dumps(val)}")
    print(f"  {'seeds':<15}{args.seeds}\n  {'seed':<15}{args.seed}")
    sys.stdout.flush()
    res = simulate_features(config, seeds=args.seeds, seed=args.seed,
                            progress=_progress(args))
    print(features_table(res))
    io.save_features(res, out, command_line=args.command_line)
    print(f"wrote {out}")
    if args.figure:
        import matplotlib.pyplot as plt

        from ..features._plot import plot_features, save_figure

        fig = plot_features(res)
        save_figure(fig, args.figure)
        plt.close(fig)
        print(f"wrote {args.figure}")
    return 0


def features_table(res) -> str:
    """Test error per λ (mean ± SE over seeds) of each feature map, and the closed form."""
    import numpy as np

    lam = res.config.ridges
    head = f"{'test error':<22}" + "".join(f"{'λ=' + format(v, 'g'):>18}" for v in lam)
    rows = [head]
    for m in res.maps:
        est = res.estimate(f"{m}/test_error")
        rows.append(f"{m:<22}" + "".join(f"{v:>11.4f}±{e:<6.4f}"
                                          for v, e in zip(est.value, est.error, strict=True)))
    if res.theory is not None:
        rows.append(f"{'rf closed form (d→∞)':<22}"
                    + "".join(f"{v:>18.4f}" for v in res.theory["test_error"]))
    if "step/top" in res.per_seed:
        for m in ("step", "spiked"):
            top = res.estimate(f"{m}/top")
            n = res.estimate(f"{m}/n_outliers")
            ov = res.estimate(f"{m}/overlap")
            rows.append(f"{m}: outliers {n.value:.2f}±{n.error:.2f}, top eigenvalue "
                        f"{top.value[-1]:.4g}±{top.error[-1]:.2g}, its overlap with the target "
                        f"directions {np.array2string(ov.value[-1], precision=3)}")
        w1 = res.estimate("w1_step_spiked")
        rows.append(f"W1(step, spiked spectra) = {w1.value:.4g} ± {w1.error:.2g}; bulk edge "
                    f"{res.estimate('bulk_edge').value:.4g}")
    return "\n".join(rows)


def _existing(path: str, name: str) -> str:
    if not os.path.exists(path):
        raise DMFTInputError(f"`{name}` file not found: {path}")
    return path


def _cmd_targets(args) -> int:
    from ..model._activations import ACTIVATIONS
    from ..model._targets import TARGETS

    print("targets (g* acting on z = h* ~ N(0, I_k)):")
    for name, t in TARGETS.items():
        print(f"  {name:<14} k={t.k}  g*(z) = {t.formula}")
    print("activations:")
    for name, a in ACTIVATIONS.items():
        smooth = "" if a.smooth else "  (non-smooth: use --response stein)"
        print(f"  {name:<14} σ(h) = {a.formula}{smooth}")
    return 0


def _cmd_inspect(args) -> int:
    from .. import io

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
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"dmft {__version__}")
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
    add_devices_arg(r)
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
    add_devices_arg(r)
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
    p.add_argument("--dpi", type=int, default=200,
                   help=f"figure resolution, {DPI_RANGE[0]} to {DPI_RANGE[1]}")
    p.set_defaults(func=_cmd_compare)

    from ._sweep import add_sweep_parsers

    add_sweep_parsers(sub, add_problem_args, _Formatter, dict(samples=DEFAULT_SAMPLES))

    p = sub.add_parser("features", help="wide network after giant GD step(s): feature spectra, "
                       "outliers and ridge readout (random, after-step, spiked equivalent)",
                       formatter_class=_Formatter)
    g = p.add_argument_group("model")
    g.add_argument("--target", default="tanh_he3", help="registered target name")
    g.add_argument("--activation", default="relu", help="student activation")
    g.add_argument("--d", type=int, default=500, help="input dimension d")
    g.add_argument("--kappa", type=float, default=1.0, help="width ratio p/d, in [0.25, 4]")
    g.add_argument("--alpha0", type=float, default=2.0, help="step batch ratio n0/d")
    g.add_argument("--alpha1", type=float, default=2.0, help="readout sample ratio n1/d")
    g.add_argument("--lr", type=float, default=1.0, help="learning-rate constant")
    g.add_argument("--lr-scaling", default="sqrt_p",
                   help="sqrt_p (η = lr·√p, giant step) or const (η = lr)")
    g.add_argument("--steps", type=int, default=1, help="GD steps on the first layer (0: none)")
    g.add_argument("--batch", default="fresh", help="fresh or reuse (batch across steps)")
    g.add_argument("--ridges", default="0.01,0.1,1,10", help="ridge values λ, comma-separated")
    g.add_argument("--label-noise", type=float, default=0.0, help="label-noise variance Δ")
    g.add_argument("--spike-rank", type=int, default=1,
                   help="rank of the spike kept in the spiked equivalent")
    g.add_argument("--n-test", type=int, default=0, help="test samples (0: max(n1, 1000))")
    r = p.add_argument_group("run")
    r.add_argument("--seeds", type=int, default=8, help="independent seeds")
    r.add_argument("--seed", type=int, default=0, help="random seed")
    r.add_argument("--quick", action="store_true", help="tiny sizes: a seconds-long smoke run")
    r.add_argument("--no-progress", action="store_true", help="no progress bar")
    r.add_argument("--out", required=True, help="output HDF5 file (.h5)")
    r.add_argument("--figure", default=None, help="figure file (.png, .pdf, ...)")
    p.set_defaults(func=_cmd_features)

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


# Python argument name -> command-line flag, for messages (`noise` → `--label-noise`)
FLAGS = {
    "p": "--p", "activation": "--activation", "second_layer": "--second-layer",
    "alpha": "--alpha", "lr": "--lr", "steps": "--steps", "ridge": "--ridge",
    "noise": "--label-noise", "schedule": "--schedule", "lr_a": "--lr-a", "m0": "--m0",
    "target": "--target", "samples": "--samples", "seed": "--seed", "replicas": "--replicas",
    "chunk_size": "--chunk-size", "response": "--response", "dtype": "--dtype", "d": "--d",
    "seeds": "--seeds", "seed_batch": "--seed-batch", "test_error": "--test-error",
    "threshold": "--threshold", "sys_error": "--sys-error", "dpi": "--dpi", "out": "--out",
    "fig_dir": "--fig-dir", "devices": "--devices",
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
    _WRITTEN.clear()
    try:
        with user_warnings():
            return fn(*args)
    except (DMFTInputError, DivergenceError, FileNotFoundError, IsADirectoryError,
            PermissionError) as exc:
        sys.stdout.flush()
        msg = flag_message(_one_line(exc))
        if getattr(args[0] if args else None, "out", None) and not re.search(
                r"\b(saved|written)\b", msg):
            msg += (f"; already written: {', '.join(_WRITTEN)}" if _WRITTEN
                    else "; nothing written")
        print(f"error: {msg}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return _interrupted(args)
    except Exception as exc:
        if "KeyboardInterrupt" in str(exc):  # an interrupt inside a JAX callback, wrapped
            return _interrupted(args)
        if os.environ.get("DMFT_TRACEBACK"):
            raise
        # anything else is a bug or a resource failure (e.g. out of memory): still one line
        sys.stdout.flush()
        first = (str(exc).strip().splitlines() or [""])[0][:300]
        saved = (f"already written: {', '.join(_WRITTEN)}" if _WRITTEN else "nothing written")
        print(f"error: unexpected {type(exc).__name__}: {first}; {saved}; rerun with "
              "DMFT_TRACEBACK=1 for the traceback and please report it", file=sys.stderr)
        return 1


def _interrupted(args) -> int:
    sys.stdout.flush()
    if _WRITTEN:
        what = f"; already written: {', '.join(_WRITTEN)}; nothing else written"
    else:
        out = getattr(args[0], "out", None) if args else None
        what = f"; nothing written to {out}" if out else "; nothing written"
    print(f"error: interrupted (Ctrl-C){what}", file=sys.stderr)
    return 130


def main(argv=None) -> int:
    """Entry point of the ``dmft`` console script."""
    try:
        return _main(argv)
    except KeyboardInterrupt:  # before a subcommand started (imports, parsing)
        print("error: interrupted (Ctrl-C); nothing written", file=sys.stderr)
        return 130


def _main(argv=None) -> int:
    enable_x64()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    args.command_line = "dmft " + shlex.join(argv)
    args.argv = argv
    return run_guarded(args.func, args)

