"""The ``dmft`` command: ``dmft solve | simulate | sweep | plot-sweep | compare | features |
targets | inspect`` (see ``dmft --help``), and the runner behind the ``solvers/`` scripts.

This module imports nothing heavy, so that :func:`main` installs its Ctrl-C handler before
numpy and JAX are imported (a Ctrl-C during start-up then also exits with code 130).
"""

from __future__ import annotations


def main(argv=None) -> int:
    """Entry point of the ``dmft`` console script (see :mod:`dmft.cli._main`)."""
    from ._interrupt import sigint_guard

    with sigint_guard():
        try:
            from ._main import main as _main
        except KeyboardInterrupt:
            import sys

            print("error: interrupted (Ctrl-C); nothing written", file=sys.stderr)
            return 130
        return _main(argv)


def run_target(name: str, defaults: dict, argv=None, description: str | None = None) -> int:
    """Shared logic of the ``solvers/<target>.py`` scripts (see :mod:`dmft.cli._runner`)."""
    from ._interrupt import sigint_guard

    with sigint_guard():
        try:
            from ._runner import run_target as _run_target
        except KeyboardInterrupt:
            import sys

            print("error: interrupted (Ctrl-C); nothing written", file=sys.stderr)
            return 130
        return _run_target(name, defaults, argv, description)
