"""The large-d simulator: the same GD as the theory, run on explicit d-dimensional weights.

It shares the problem definition and the network/loss functions with the solver (``dmft.model``)
and nothing of the solver's machinery, so that an error in one cannot hide in the other.
"""

from ._simulate import TRACE_COUNT as TRACE_COUNT
from ._simulate import simulate as simulate
