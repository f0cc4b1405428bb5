"""``dmft optimize``: design a problem's numbers (e.g. the per-step learning rate) by gradient
descent on the DMFT, written to an HDF5 file (docs/FORMAT.md, "Optimisation files").

Example::

    dmft optimize --target he3 --schedule repeat:2 --alpha 2 --steps 6 --lr 0.4 \\
        --objective m_norm --wrt lr --iterations 60 --samples 32000 --replicas 8 --out opt.h5
"""

from __future__ import annotations

from .._validate import check_int
from ._common import (
    Formatter,
    add_dtype_arg,
    add_out_arg,
    add_problem_args,
    add_progress_arg,
    add_samples_args,
    check_out,
    dtype_from_args,
    print_config,
    problem_from_args,
    progress_from_args,
)
from ._guard import before_write


def add_parser(subparsers) -> None:
    from .._optimize import OBJECTIVES

    p = subparsers.add_parser("optimize", help="optimise numbers of a problem on the DMFT "
                                               "(gradients through the theory)",
                              formatter_class=Formatter)
    add_problem_args(p)
    o = p.add_argument_group("optimisation")
    o.add_argument("--objective", default="m_norm",
                   help="; ".join(f"{k}: {v[0]}" for k, v in OBJECTIVES.items()))
    o.add_argument("--wrt", default="lr",
                   help="comma list of fields of dmft.numbers(problem) to optimise (lr, lr_a, "
                        "alpha, ridge, noise, m0, qperp0, second_layer, ...)")
    o.add_argument("--iterations", type=int, default=50, help="optimiser (Adam) iterations")
    o.add_argument("--learning-rate", type=float, default=0.05,
                   help="Adam step on the unconstrained parameters (softplus⁻¹ of η_t, ...)")
    r = p.add_argument_group("run")
    add_samples_args(r, samples=20_000)
    add_dtype_arg(r)
    add_progress_arg(r, help="no per-iteration progress lines")
    add_out_arg(r)
    p.set_defaults(func=cmd_optimize, replicas=4)


def cmd_optimize(args) -> int:
    from .._optimize import check_objective, check_wrt, optimize

    problem = problem_from_args(args)
    wrt = check_wrt([w.strip() for w in args.wrt.split(",") if w.strip()])
    check_objective(args.objective)
    iterations = check_int("iterations", args.iterations, low=1)
    samples = check_int("samples", args.samples, low=2)
    check_int("seed", args.seed, low=0)
    dtype_from_args(args)
    out = check_out(args.out)
    settings = dict(objective=args.objective, wrt=list(wrt), iterations=iterations,
                    learning_rate=args.learning_rate, samples=samples, seed=args.seed,
                    replicas=args.replicas, dtype=args.dtype)
    print_config("dmft optimize", problem, settings)
    progress = progress_from_args(args)
    res = optimize(problem, args.objective, wrt=wrt, steps=iterations, samples=samples,
                   seed=args.seed, replicas=args.replicas, learning_rate=args.learning_rate,
                   dtype=args.dtype, progress=True if progress is None else progress)
    before_write()
    res.save(out, command_line=args.command_line)
    print(res)
    print(f"wall time: {res.settings['wall_time_s']:.2f} s")
    print(f"wrote {out}" + ("" if res.status == "ok" else f" (status {res.status})"))
    return 0
