"""What a compiled sweep is specialised on: sizes, schedule, estimator and dtype.

Everything numeric about the problem (α, η_t, λ, Δ, m₀, Q⊥₀, a, η_a) is *not* here: it enters
the compiled sweep as traced arrays (``problem.numbers(st.kdtype)``, a ``dmft.model.Numbers``),
so changing a number never recompiles. The compile cache is keyed on this structure plus the
problem's static fields (target, activation, p, schedule).
"""

from __future__ import annotations

import dataclasses

import jax.numpy as jnp
import numpy as np

from .._precision import kernel_dtype
from ..model import Problem, batch_index


def schedule_mode(bt) -> str:
    """``reuse`` (one batch), ``fresh`` (a new batch at every time) or ``general``."""
    nb = int(np.max(bt)) + 1
    return "reuse" if nb == 1 else ("fresh" if nb == len(bt) else "general")


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
    def padded(self) -> bool:
        return self.npad * self.sample_shards != self.n_real

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
                     kernel_dtype_name=kernel_dtype(dtype).name)
