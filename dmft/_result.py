"""Result containers shared by the DMFT solver and the simulator."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # only for the annotation: reading a file's result needs no JAX import here
    from .model._problem import Problem


class Estimate(NamedTuple):
    """A Monte Carlo estimate: ``value`` and its standard error ``error`` (same shape)."""

    value: np.ndarray
    error: np.ndarray


def estimate_from_replicas(x: np.ndarray, axis: int = 0) -> Estimate:
    """Mean over independent replicas and the standard error of that mean."""
    x = np.asarray(x, dtype=np.float64)
    n = x.shape[axis]
    mean = x.mean(axis=axis)
    if n < 2:
        return Estimate(mean, np.full_like(mean, np.nan))
    return Estimate(mean, x.std(axis=axis, ddof=1) / np.sqrt(n))


from .observables._table import OBSERVABLES as _TABLE

OBSERVABLES = tuple(_TABLE)


@dataclasses.dataclass
class Trajectory:
    """Trajectories of the order parameters over GD steps t = 0..T, each with its error.

    Attributes:
        kind: ``"dmft"``, ``"simulation"``, ``"online"`` (one-pass SGD ODE, ``step`` holds τ) or
            ``"flow"`` (gradient flow, ``step`` holds τ = Σ η_t).
        problem: the :class:`~dmft.problem.Problem` that was solved or simulated.
        step: the steps 0..T (length T+1; shorter for a diverged run).
        m: overlaps m_t, shape (T+1, p, k).
        Q: student Gram Q_t, shape (T+1, p, p).
        test_error: e_g(t) including label noise Δ/2, shape (T+1,).
        train_loss: (1/n) Σ_ν ℓ at step t, shape (T+1,).
        kernels: DMFT only: ``Qperp``, ``C``, ``Gamma``, ``R``, each (T+1, T+1, p, p).
        a: the second layer a_t, shape (T+1, p), when it is trained (``problem.lr_a`` > 0).
        per_seed: simulation only: per-seed arrays with a leading seed axis.
        diagnostics: arrays over steps (e.g. ``min_schur_eig``, ``jitter``).
        settings: run settings (seed, samples, replicas, d, seeds, dtype, ...).
        status: ``"ok"`` or ``"diverged"``.
        first_bad_step: the first step with a non-finite value, or -1.
        test_loss: E[ℓ] on a fresh sample, shape (T+1,), for a classification loss
            (logistic), whose ``test_error`` is the classification error P(sign f ≠ y); None
            otherwise (the test error is then the test loss). Not saved by ``dmft.io`` yet.
    """

    kind: str
    problem: Problem
    step: np.ndarray
    m: Estimate
    Q: Estimate
    test_error: Estimate
    train_loss: Estimate
    kernels: dict[str, Estimate] | None = None
    a: Estimate | None = None
    per_seed: dict[str, np.ndarray] | None = None
    diagnostics: dict[str, np.ndarray] = dataclasses.field(default_factory=dict)
    settings: dict = dataclasses.field(default_factory=dict)
    status: str = "ok"
    first_bad_step: int = -1
    test_loss: Estimate | None = None

    @property
    def steps(self) -> int:
        return int(len(self.step)) - 1

    def observable(self, name: str) -> Estimate:
        if name not in OBSERVABLES:
            raise KeyError(f"unknown observable {name!r}; choose from {OBSERVABLES}")
        return getattr(self, name)


def kernel_diagonal(K) -> np.ndarray:
    """``K[:, t, t]`` for a replica-stacked two-time kernel K of shape (r, T, T, ...), as an
    array of shape (r, T, ...); also for T = 0 (a run non-finite already at step 0), where
    ``np.einsum("rtt...->rt...")`` and ``K[:, :0, 0]`` fail."""
    K = np.asarray(K)
    idx = np.arange(K.shape[1])
    return K[:, idx, idx]


# Blow-up criterion (docs/FORMAT.md, "status"): a run *blew up* at the first step t where the
# largest diagonal entry of the student Gram matrix, max_j Q_t[j, j] = max_j |w_j|²/d, exceeds
# BLOWUP_RATIO times its initial scale max(1, max_j Q_0[j, j]). Such a run stays finite (its
# status would be "ok") but no longer describes learning: e.g. he3, α = 2, p = 2 relu, lr = 4,
# T = 10–20 reaches Q ~ 1e10–1e26.
BLOWUP_RATIO = 1e6


BLOWUP_STATUS = "blew_up"


def blowup_step(Q) -> int:
    """First step whose Q (shape (T+1, p, p)) exceeds the blow-up criterion; -1 if none."""
    Q = np.asarray(Q, dtype=np.float64)
    if Q.ndim != 3 or Q.shape[0] == 0:
        return -1
    diag = np.abs(np.diagonal(Q, axis1=1, axis2=2)).max(axis=1)  # (T+1,)
    scale = max(1.0, float(diag[0])) if np.isfinite(diag[0]) else 1.0
    over = np.nonzero(diag > BLOWUP_RATIO * scale)[0]
    return int(over[0]) if over.size else -1


def mark_blowup(traj, *, warn: bool = True, stacklevel: int = 2):
    """Mark ``traj`` (a Trajectory with status "ok") as blown up when its mean Q meets the
    blow-up criterion: ``status = "blew_up"``, ``first_bad_step`` = the first such step (all
    steps are kept), and a RuntimeWarning. Returns ``traj``."""
    if traj.status != "ok":
        return traj
    t = blowup_step(traj.Q.value)
    if t < 0:
        return traj
    traj.status = BLOWUP_STATUS
    traj.first_bad_step = t
    if warn:
        import warnings

        diag = np.diagonal(np.asarray(traj.Q.value, dtype=np.float64), axis1=1, axis2=2)
        warnings.warn(
            f"the {traj.kind} run blew up at step {t}: max_j Q[j,j] = {float(np.max(diag[t])):.3g} "
            f"exceeds {BLOWUP_RATIO:g} x its initial scale (max_j Q_0[j,j] = "
            f"{float(np.max(diag[0])):.3g}, at least 1); status set to {BLOWUP_STATUS!r}. Likely "
            "cause: a learning rate above the stability limit of GD on this problem",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    return traj

