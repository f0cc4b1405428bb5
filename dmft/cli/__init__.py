"""The ``dmft`` command: ``dmft solve | simulate | sweep | plot-sweep | compare | features |
targets | inspect`` (see ``dmft --help``), and the runner behind the ``solvers/`` scripts."""

from ._main import main as main
from ._runner import run_target as run_target
