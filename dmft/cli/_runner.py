"""Shared logic of the ``solvers/<target>.py`` scripts: DMFT, simulation, files, figure, z-table.

Each script only states its target's defaults and calls :func:`run_target`::

    from dmft.cli import run_target

    def main(argv=None) -> int:
        return run_target("tanh_he3", dict(alpha=3.0, lr=0.2, steps=6), argv)

The script then accepts ``--quick --samples --d --seeds --seed --devices --no-progress --out
--fig-dir`` (plus every problem flag of ``dmft solve``, defaulting to the script's values),
writes ``<out>/dmft.h5``, ``<out>/simulation.h5`` and ``<fig-dir>/<target>.png``, and prints the
z-score table. Exit codes as for ``dmft``: 0 ok, 1 user error or divergence, 2 usage error, 3 a
failed verdict with ``--strict``.
"""

from __future__ import annotations

import argparse
import os
import shlex
import sys
import time

from .._validate import check_int
from ._common import (
    DEFAULT_D,
    DEFAULT_SAMPLES,
    DEFAULT_SEEDS,
    FIGURE_SUFFIXES,
    Formatter,
    add_devices_arg,
    add_problem_args,
    add_progress_arg,
    add_samples_args,
    check_out,
    device_count,
    devices_from_args,
    enable_x64,
    join_negative_values,
    print_config,
    problem_from_args,
    progress_from_args,
    save_or_partial,
)
from ._guard import before_write, run_guarded

QUICK = dict(samples=20_000, d=300, seeds=4, max_steps=4)


def build_parser(name: str, defaults: dict, description: str | None = None):
    parser = argparse.ArgumentParser(
        prog=f"solvers/{name}.py", formatter_class=Formatter,
        description=description or f"DMFT and simulation for the target {name}.",
    )
    add_problem_args(parser, defaults, target_required=False)
    r = parser.add_argument_group("run")
    r.add_argument("--quick", action="store_true",
                   help=f"tiny sizes to finish in seconds (samples {QUICK['samples']}, "
                   f"d {QUICK['d']}, seeds {QUICK['seeds']}, steps <= {QUICK['max_steps']}); "
                   "explicit --samples/--d/--seeds still win")
    n_default = defaults.get("samples", DEFAULT_SAMPLES)
    add_samples_args(r, samples=None, samples_help=f"DMFT effective samples (default {n_default})",
                     seed_help="random seed (both runs)", replicas_help="DMFT replicas for the SE")
    r.add_argument("--d", type=int, default=None,
                   help=f"simulation dimension (default {defaults.get('d', DEFAULT_D)})")
    r.add_argument("--seeds", type=int, default=None,
                   help=f"simulation seeds (default {defaults.get('seeds', DEFAULT_SEEDS)})")
    add_devices_arg(r)
    r.add_argument("--threshold", type=float, default=4.0, help="verdict: max |z| < threshold")
    r.add_argument("--strict", action="store_true", help="exit code 3 when the verdict fails")
    add_progress_arg(r, help="no progress bars")
    r.add_argument("--out", default=os.path.join("runs", name),
                   help="folder for dmft.h5 and simulation.h5")
    r.add_argument("--fig-dir", default="figures", help="folder for the figure")
    return parser


def run_target(name: str, defaults: dict, argv=None, description: str | None = None) -> int:
    """Parse ``argv`` with the target's ``defaults``, run DMFT + simulation, save, plot, compare.

    Args:
        name: a registered target (``dmft.model.TARGETS``).
        defaults: problem defaults (``p``, ``activation``, ``second_layer``, ``alpha``, ``lr``,
            ``steps``, ``ridge``, ``noise``, ``schedule``, ``m0``) and optionally run sizes
            (``samples``, ``d``, ``seeds``).
        argv: command-line arguments (``None``: ``sys.argv[1:]``).
        description: the ``--help`` text (usually the script's docstring).

    Returns:
        The exit code.
    """
    enable_x64()
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser(name, defaults, description)
    try:
        args = parser.parse_args(join_negative_values(parser, argv))
    except SystemExit as exc:
        return int(exc.code or 0)
    args.target = name
    args.argv = argv
    args.command_line = f"solvers/{name}.py " + shlex.join(argv)
    return run_guarded(_run, args, defaults)


def _run(args, defaults: dict) -> int:
    from ..compare import zscore_table
    from ..plot import plot_comparison, save_figure
    from ..simulator import simulate
    from ..solver import solve

    if args.quick and not any(a == "--steps" or a.startswith("--steps=") for a in args.argv):
        args.steps = min(args.steps, QUICK["max_steps"])
    size = QUICK if args.quick else {}

    def pick(flag, fallback):
        given = getattr(args, flag)
        return given if given is not None else size.get(flag, defaults.get(flag, fallback))

    samples = check_int("samples", pick("samples", DEFAULT_SAMPLES), low=2)
    d = check_int("d", pick("d", DEFAULT_D), low=1)
    seeds = check_int("seeds", pick("seeds", DEFAULT_SEEDS), low=1)
    seed = check_int("seed", args.seed, low=0)
    problem = problem_from_args(args)
    devices = devices_from_args(args)
    progress = progress_from_args(args)

    dmft_path = os.path.join(args.out, "dmft.h5")
    sim_path = os.path.join(args.out, "simulation.h5")
    fig_path = os.path.join(args.fig_dir, f"{args.target}.png")
    from ..io import check_output_path, estimate_file_bytes

    # every output is checked before any compute
    check_out(dmft_path, need_bytes=estimate_file_bytes("dmft", problem.steps, problem.p,
                                                         problem.k))
    check_out(sim_path, need_bytes=estimate_file_bytes("simulation", problem.steps, problem.p,
                                                        problem.k, seeds))
    check_output_path(fig_path, name="fig_dir", suffixes=FIGURE_SUFFIXES)
    print_config(f"{args.target}", problem, dict(samples=samples, replicas=args.replicas, d=d,
                                                  seeds=seeds, seed=seed,
                                                  devices=device_count(devices)))

    t0 = time.perf_counter()
    theory = save_or_partial(
        lambda: solve(problem, samples, seed=seed, replicas=args.replicas, progress=progress,
                      devices=devices),
        dmft_path, args.command_line)
    t1 = time.perf_counter()
    print(f"DMFT: {t1 - t0:.1f} s, wrote {dmft_path}")
    sim = save_or_partial(
        lambda: simulate(problem, d, seeds, seed=seed, progress=progress, devices=devices),
        sim_path, args.command_line)
    t2 = time.perf_counter()
    print(f"simulation: {t2 - t1:.1f} s, wrote {sim_path}")
    sys.stdout.flush()

    table = zscore_table(theory, sim, threshold=args.threshold)
    print(table)
    fig = plot_comparison(theory, sim)
    before_write()
    save_figure(fig, fig_path)
    import matplotlib.pyplot as plt

    plt.close(fig)
    print(f"wrote {fig_path}")
    return 3 if (args.strict and not table.passed) else 0


__all__ = ["run_target", "build_parser", "QUICK"]
