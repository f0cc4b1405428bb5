"""What a compiled sweep is specialised on: sizes, schedule, estimator and dtype.

Everything numeric about the problem (α, η_t, λ, Δ, m₀, Q⊥₀, a, η_a) is *not* here: it enters
the compiled sweep as traced arrays (see :func:`numeric_problem`), so changing a number never
recompiles. The compile cache is keyed on this structure plus the problem's static fields
(target, activation, p, schedule).
"""

from __future__ import annotations

import dataclasses
import os

import jax.numpy as jnp
import numpy as np

from .._errors import DMFTInputError
from .._precision import kernel_dtype
from ..model._problem import Numbers, Problem
from ..model._schedules import batch_index


def schedule_mode(bt) -> str:
    """``reuse`` (one batch), ``fresh`` (a new batch at every time) or ``general``."""
    nb = int(np.max(bt)) + 1
    return "reuse" if nb == 1 else ("fresh" if nb == len(bt) else "general")


# The step's live-slot loop (dmft/solver/_live.py): columns (slots × units) per block, 0 = one
# product over all T + 1 slots. Default 0: on the 2-core CPU every blocked variant measured was
# slower than the full-width products (benchmarks/live_slots.py); ``DMFT_LIVE_COLUMNS`` sets it
# per process, so that a GPU session can measure both (benchmarks/gpu.py).
LIVE_COLUMNS_ENV = "DMFT_LIVE_COLUMNS"


def live_columns() -> int:
    """Columns per live-slot block from ``$DMFT_LIVE_COLUMNS`` (default 0: full width)."""
    raw = os.environ.get(LIVE_COLUMNS_ENV, "").strip()
    if not raw:
        return 0
    try:
        value = int(raw)
    except ValueError:
        value = -1
    if value < 0:
        raise DMFTInputError(f"${LIVE_COLUMNS_ENV} must be an integer >= 0 (0 = all slots in one "
                         f"product); got {raw!r}")
    return value


@dataclasses.dataclass(frozen=True)
class Structure:
    """Static sizes of one solve (hashable: it is part of the compile-cache key)."""

    p: int
    k: int
    T1: int
    n_real: int
    npad: int
    chunk: int
    response: str
    dtype_name: str
    bt: tuple
    # sample shards of a replica (dmft/solver/_sharding.py): each device holds ``npad`` rows,
    # the replica ``npad * sample_shards`` >= n_real; 1 = the whole replica on one device
    sample_shards: int = 1
    kernel_dtype_name: str = ""  # "" = dtype; float64 for a mixed-precision float32 solve
    # mini-batches of one dataset: "none", "sgd" (b traced) or "epochs" (B = ``epoch``, static)
    selection: str = "none"
    epoch: int = 1
    # columns per block of the live-slot loop; 0 = every slot in one product (``_live``)
    live_columns: int = 0

    @property
    def dtype(self):
        """The dtype of the per-sample arrays (histories) and arithmetic."""
        return jnp.dtype(self.dtype_name)

    @property
    def kdtype(self):
        """The dtype of the kernels, factors and Monte Carlo sums (see ``_precision``)."""
        return jnp.dtype(self.kernel_dtype_name or self.dtype_name)

    @property
    def nb(self) -> int:
        return int(max(self.bt)) + 1

    @property
    def mode(self) -> str:
        return schedule_mode(np.asarray(self.bt))

    @property
    def pathwise(self) -> bool:
        return self.response == "pathwise"

    @property
    def padded(self) -> bool:
        return self.npad * self.sample_shards != self.n_real

    @property
    def slot_block(self) -> int:
        """Slots per block of the live-slot loop (``_live``): ``live_columns // p`` (at least
        1); all T + 1 slots (one product) when ``live_columns`` is 0 or they fit in one block."""
        if not self.live_columns:
            return self.T1
        return min(self.T1, max(1, self.live_columns // self.p))

    @property
    def n_regress(self) -> int:
        """Regressors of the control-variate regression at the last step."""
        if self.mode == "fresh":
            return self.k + 2 + self.p
        return 1 + self.nb * (self.k + 1) + self.T1 * self.p


def make_structure(problem: Problem, n_real: int, chunk: int, response: str,
                   dtype) -> Structure:
    T = problem.steps
    npad = -(-n_real // chunk) * chunk
    return Structure(p=problem.p, k=problem.k, T1=T + 1, n_real=n_real, npad=npad, chunk=chunk,
                     response=response, dtype_name=jnp.dtype(dtype).name,
                     bt=tuple(int(b) for b in batch_index(problem.schedule, T)),
                     selection=problem.selection, epoch=problem.epoch_length,
                     kernel_dtype_name=kernel_dtype(dtype).name, live_columns=live_columns())


def numeric_problem(problem: Problem, dtype) -> Numbers:
    """``problem.numbers()`` in the kernel dtype of ``dtype`` (float64 for a float32 solve when
    x64 is on: see ``dmft._precision``)."""
    return problem.numbers(kernel_dtype(dtype))
