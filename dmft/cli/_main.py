"""The ``dmft`` command line: solve, simulate, sweep, plot-sweep, optimize, compare, features,
targets, inspect.

Exit codes: 0 success; 1 a user error or a diverged run, reported as ONE line ``error: ...`` on
stderr (no traceback) that names the flag, the value and what is allowed, and says what was
saved (an unexpected exception is also one line, exit 1; ``DMFT_TRACEBACK=1`` shows its
traceback); 2 a command-line usage error (argparse); 130 interrupted (Ctrl-C), with one line
saying that nothing was written. ``compare`` exits 1 when the verdict fails (``--report-only``:
0). Every input, ``--out`` included (a writable folder, not a directory, a name that fits, free
space), is checked before any compute.

Each command is one module here (``_solve``, ``_simulate``, ``_compare``, ``_sweep`` with
plot-sweep, ``_optimize``, ``_features``, ``_info`` with targets and inspect) that adds its own
subparser; the flags they share are defined once in ``_common``, the failure reporting is
``_guard``.

Examples::

    dmft solve --target tanh_he3 --samples 200000 --out runs/dmft.h5
    dmft simulate --target tanh_he3 --d 2000 --seeds 16 --out runs/sim.h5
    dmft compare runs/dmft.h5 runs/sim.h5 --out figures/tanh_he3.png
    dmft features --target tanh_he3 --d 500 --seeds 8 --out runs/features.h5 --figure f.png
"""

from __future__ import annotations

import argparse
import shlex
import sys

from . import _compare, _features, _info, _optimize, _simulate, _solve, _sweep
from ._common import Formatter, enable_x64, join_negative_values
from ._guard import run_guarded

# `dmft --help` lists the commands in this order
COMMANDS = (_solve, _simulate, _compare, _sweep, _optimize, _features, _info)


def build_parser() -> argparse.ArgumentParser:
    """The ``dmft`` parser: each command module adds its own subparser(s)."""
    parser = argparse.ArgumentParser(
        prog="dmft", formatter_class=Formatter,
        description="DMFT of multi-pass GD on two-layer networks, and a large-d simulator.",
        epilog=__doc__.split("Examples::", 1)[1] if "Examples::" in __doc__ else None,
    )
    from .. import __version__

    parser.add_argument("--version", action="version", version=f"dmft {__version__}")
    subparsers = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    for command in COMMANDS:
        command.add_parser(subparsers)
    return parser


def main(argv=None) -> int:
    """Run one ``dmft`` command (``dmft.cli.main`` calls this inside its Ctrl-C handler)."""
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
        args = parser.parse_args(join_negative_values(parser, argv))
    except SystemExit as exc:  # argparse: 0 for --help, 2 for usage errors
        return int(exc.code or 0)
    args.command_line = "dmft " + shlex.join(argv)
    args.argv = argv
    return run_guarded(args.func, args)
