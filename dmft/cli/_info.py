"""``dmft targets`` (the registered targets and activations) and ``dmft inspect`` (a file's
version, kind, configuration and datasets)."""

from __future__ import annotations

from ._common import Formatter, existing


def add_parser(subparsers) -> None:
    p = subparsers.add_parser("targets", help="list targets and activations",
                              formatter_class=Formatter)
    p.set_defaults(func=cmd_targets)

    p = subparsers.add_parser("inspect", help="print a file's version, kind, config and datasets",
                              formatter_class=Formatter)
    p.add_argument("file", help="an HDF5 file written by dmft")
    p.set_defaults(func=cmd_inspect)


def cmd_targets(args) -> int:
    from ..model import ACTIVATIONS, TARGETS

    print("targets (g* acting on z = h* ~ N(0, I_k)):")
    for name, t in TARGETS.items():
        print(f"  {name:<14} k={t.k}  g*(z) = {t.formula}")
    print("activations:")
    for name, a in ACTIVATIONS.items():
        smooth = "" if a.smooth else "  (non-smooth: use --response stein)"
        print(f"  {name:<14} σ(h) = {a.formula}{smooth}")
    return 0


def cmd_inspect(args) -> int:
    from .. import io

    print(io.describe(existing(args.file, "file")))
    return 0
