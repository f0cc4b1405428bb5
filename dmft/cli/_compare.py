"""``dmft compare``: z-scores of a theory file against a simulation file, the verdict, and
the comparison figure. A failed verdict exits with code 1 (after the table and the figure) and
one line ``error: ...`` on stderr; ``--report-only`` exits 0 whatever the verdict."""

from __future__ import annotations

import sys

from .._errors import DMFTInputError
from ._common import Formatter, add_dpi_arg, check_figure_args, existing
from ._guard import before_write, one_line


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("compare",
                              help="z-scores of theory vs simulation, verdict and figure",
                              formatter_class=Formatter)
    p.add_argument("theory", help="theory file (e.g. from `dmft solve`)")
    p.add_argument("sim", help="simulation file (e.g. from `dmft simulate`)")
    p.add_argument("--out", default=None, help="figure file (.png, .pdf, ...)")
    p.add_argument("--threshold", type=float, default=4.0, help="pass if max |z| < threshold")
    p.add_argument("--sys-error", type=float, default=0.0,
                   help="absolute finite-d allowance added in quadrature to the SE")
    p.add_argument("--allow-different", action="store_true",
                   help="compare runs of different problems")
    p.add_argument("--report-only", "--no-fail", action="store_true",
                   help="exit code 0 even when the verdict fails (only print the table)")
    p.add_argument("--strict", action="store_true",
                   help="accepted for older scripts: a failed verdict exits 1 by default")
    add_dpi_arg(p)
    p.set_defaults(func=cmd_compare)


def cmd_compare(args) -> int:
    from .. import io
    from .._validate import check_real
    from ..compare import zscore_table

    check_real("threshold", args.threshold, low=0.0, low_open=True)
    check_real("sys_error", args.sys_error, low=0.0)
    check_figure_args(args)
    theory = io.load(existing(args.theory, "theory"))
    sim = io.load(existing(args.sim, "sim"))
    table = zscore_table(theory, sim, threshold=args.threshold, sys_error=args.sys_error,
                         check_problem=not args.allow_different,
                         allow_flag="--allow-different")
    print(table)
    if args.out:
        import matplotlib.pyplot as plt

        from ..plot import plot_comparison, save_figure

        fig = plot_comparison(theory, sim)
        before_write()
        try:
            save_figure(fig, args.out, dpi=args.dpi)
        except (ValueError, OSError, RuntimeError) as exc:
            raise DMFTInputError(
                f"cannot write the figure --out={args.out!r}: {one_line(exc)}; nothing was "
                "written (the z-table above is complete)"
            ) from None
        finally:
            plt.close(fig)
        print(f"wrote {args.out}")
    if table.passed or args.report_only:
        return 0
    reasons = "; ".join(line.strip() for line in table.verdict().splitlines())
    print(f"error: the verdict is FAIL ({reasons}); pass --report-only to exit 0 on a failed "
          "verdict", file=sys.stderr)
    return 1
