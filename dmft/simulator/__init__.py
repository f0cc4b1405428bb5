"""The large-d simulator: the same GD as the theory, run on explicit d-dimensional weights.

It shares the problem definition and the network/loss functions with the solver (``dmft.model``,
``dmft.observables``) and nothing of the solver's machinery, so that an error in one cannot hide
in the other. Modules: ``_draws`` (every random draw and its key), ``_train`` (one seed's GD
loop), ``_seeds`` (seed batches over devices), ``_simulate`` (:func:`simulate`).
"""

from ._seeds import TRACE_COUNT as TRACE_COUNT
from ._simulate import simulate as simulate
