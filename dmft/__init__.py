"""dmft: exact high-dimensional dynamics of multi-pass gradient descent on two-layer networks.

Solve the dynamical mean-field theory (DMFT) of full-batch GD that reuses its batch, and check it
against a direct large-d simulation of the same training. See README.md and docs/.
"""

from ._checks import DivergenceError as DivergenceError
from ._checks import DMFTInputError as DMFTInputError
from .flow import solve_flow as solve_flow
from .observables import test_error as test_error
from .observables import test_loss as test_loss
from .online import solve_online as solve_online
from .problem import ACTIVATIONS as ACTIVATIONS
from .problem import LOSSES as LOSSES
from .problem import TARGETS as TARGETS
from .problem import Loss as Loss
from .problem import Problem as Problem
from .problem import Target as Target
from .problem import custom_target as custom_target
from .problem import make_problem as make_problem
from .result import Estimate as Estimate
from .result import Trajectory as Trajectory
from .simulate import simulate as simulate
from .solver import solve as solve
from .sweep import SweepResult as SweepResult
from .sweep import sweep as sweep

__version__ = "0.1.0"


def set_precision(precision: str) -> None:
    """``"double"`` turns JAX x64 on, ``"single"`` turns it off. Call before creating arrays."""
    import jax

    if precision not in ("double", "single"):
        raise DMFTInputError(f"`precision` must be 'double' or 'single'; got {precision!r}")
    jax.config.update("jax_enable_x64", precision == "double")
