"""``dmft simulate``: GD at finite d on explicit weights, written to an HDF5 file."""

from __future__ import annotations

from .._errors import DMFTInputError
from .._validate import check_int
from ._common import (
    DEFAULT_D,
    DEFAULT_SEEDS,
    Formatter,
    add_devices_arg,
    add_dtype_arg,
    add_out_arg,
    add_problem_args,
    add_progress_arg,
    add_seed_arg,
    check_out,
    device_count,
    devices_from_args,
    dtype_from_args,
    print_config,
    problem_from_args,
    progress_from_args,
    save_or_partial,
    status_note,
)


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("simulate", help="simulate GD at finite d and write an HDF5 file",
                              formatter_class=Formatter)
    add_problem_args(p)
    r = p.add_argument_group("run")
    r.add_argument("--d", type=int, default=DEFAULT_D, help="input dimension d (n = α d)")
    r.add_argument("--seeds", type=int, default=DEFAULT_SEEDS, help="independent seeds")
    add_seed_arg(r)
    r.add_argument("--seed-batch", type=int, default=None,
                   help="seeds run at once (memory); default all")
    add_dtype_arg(r)
    r.add_argument("--test-error", default="exact",
                   help="exact (quadrature from m, Q) or sample (fresh test set)")
    add_devices_arg(r)
    add_progress_arg(r)
    add_out_arg(r)
    p.set_defaults(func=cmd_simulate)


def cmd_simulate(args) -> int:
    from ..io import estimate_file_bytes

    problem = problem_from_args(args)
    d = check_int("d", args.d, low=1)
    seeds = check_int("seeds", args.seeds, low=1)
    out = check_out(args.out, need_bytes=estimate_file_bytes(
        "simulation", problem.steps, problem.p, problem.k, seeds))
    check_int("seed", args.seed, low=0)
    if args.seed_batch is not None:
        check_int("seed_batch", args.seed_batch, low=1)
    if args.test_error not in ("exact", "sample"):
        raise DMFTInputError(
            f"`test_error` must be one of ['exact', 'sample']; got test_error={args.test_error!r}"
        )
    from ..simulator import simulate

    dtype_from_args(args)
    devices = devices_from_args(args)
    settings = dict(d=d, seeds=seeds, seed=args.seed, seed_batch=args.seed_batch,
                    test_error=args.test_error, dtype=args.dtype, devices=device_count(devices))
    print_config("dmft simulate", problem, settings)
    traj = save_or_partial(
        lambda: simulate(problem, d, seeds, seed=args.seed, seed_batch=args.seed_batch,
                         test_error=args.test_error, dtype=args.dtype,
                         progress=progress_from_args(args), devices=devices),
        out, args.command_line)
    print(f"wrote {out}" + status_note(traj))
    return 0
