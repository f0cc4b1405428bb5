"""``dmft solve``: the DMFT of a problem, written to an HDF5 file."""

from __future__ import annotations

from .._validate import check_int
from ._common import (
    Formatter,
    add_devices_arg,
    add_dtype_arg,
    add_out_arg,
    add_problem_args,
    add_progress_arg,
    add_samples_args,
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
    p = subparsers.add_parser("solve", help="solve the DMFT and write an HDF5 file",
                              formatter_class=Formatter)
    add_problem_args(p)
    r = p.add_argument_group("run")
    add_samples_args(r)
    r.add_argument("--chunk-size", type=int, default=None,
                   help="samples per chunk inside a replica (default: the whole replica, "
                        "fastest; smaller bounds the per-step temporaries)")
    r.add_argument("--response", default="stein", help="response estimator: stein or pathwise")
    add_dtype_arg(r)
    add_devices_arg(r)
    add_progress_arg(r)
    add_out_arg(r)
    p.set_defaults(func=cmd_solve)


def cmd_solve(args) -> int:
    from ..io import estimate_file_bytes
    from ..solver import solve

    problem = problem_from_args(args)
    samples = check_int("samples", args.samples, low=2)
    check_int("seed", args.seed, low=0)
    dtype_from_args(args)
    devices = devices_from_args(args)
    out = check_out(args.out, need_bytes=estimate_file_bytes("dmft", problem.steps, problem.p,
                                                             problem.k))
    settings = dict(samples=samples, seed=args.seed, replicas=args.replicas,
                    chunk_size=args.chunk_size, response=args.response, dtype=args.dtype,
                    devices=device_count(devices))
    print_config("dmft solve", problem, settings)
    traj = save_or_partial(
        lambda: solve(problem, samples, seed=args.seed, replicas=args.replicas,
                      chunk_size=args.chunk_size, response=args.response,
                      dtype=args.dtype, progress=progress_from_args(args), devices=devices),
        out, args.command_line)
    print(f"wall time: {traj.settings.get('wall_time_s', float('nan')):.2f} s")
    print(f"wrote {out}" + status_note(traj))
    return 0
