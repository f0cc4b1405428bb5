"""Result containers shared by the DMFT solver and the simulator."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # only for the annotation: reading a file's result needs no JAX import here
    from .problem import Problem


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


from ._table import OBSERVABLES as _TABLE

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
