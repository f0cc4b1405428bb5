"""Result containers shared by the DMFT solver and the simulator."""

from __future__ import annotations

import dataclasses
from typing import TYPE_CHECKING, NamedTuple

import numpy as np

if TYPE_CHECKING:  # only for the annotation: reading a file's result needs no JAX import here
    from .model import Problem


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


from .observables import DERIVED, OBSERVABLES, OPTIONAL

REPORTED = (*OBSERVABLES, *OPTIONAL)

# What the time axis of each kind of run holds, and its plot label.
TIME_AXES = {
    "dmft": ("step", "GD step $t$"),
    "simulation": ("step", "GD step $t$"),
    "flow": ("tau", r"$\tau = \sum_t \eta_t$ (gradient flow)"),
    "online": ("tau", r"$\tau$ = SGD steps / $d$ (online)"),
}


class TimeAxis(NamedTuple):
    """The time axis of a run: ``name`` ``"step"`` (GD steps 0..T) or ``"tau"`` (continuous
    time of gradient flow or of the online ODE), its ``values`` and a plot ``label``."""

    name: str
    values: np.ndarray
    label: str


@dataclasses.dataclass(init=False)
class Trajectory:
    """Trajectories of the order parameters over time, each observable with its error.

    The observables are data: ``observables`` maps each name of the table
    (:mod:`dmft.observables`: ``m``, ``Q``, ``test_error``, ``train_loss`` and, when computed,
    ``a`` and ``test_loss``) to its :class:`Estimate`; ``traj.m`` is ``traj.observables["m"]``
    (``None`` for an optional one that was not computed), and :meth:`observable` also gives the
    derived ones (``m_norm``). Build one from per-replica arrays with :meth:`from_replicas`.

    Attributes:
        kind: ``"dmft"``, ``"simulation"``, ``"flow"`` (gradient flow) or ``"online"``
            (one-pass SGD ODE); :attr:`time` says what ``step`` holds for each.
        problem: the :class:`~dmft.model.Problem` that was solved or simulated.
        step: the time points: GD steps 0..T (shorter for a diverged run), or τ.
        observables: name -> Estimate; shapes m (T+1, p, k), Q (T+1, p, p), test_error and
            train_loss (T+1,), a (T+1, p), test_loss (T+1,).
        kernels: DMFT only: ``Qperp``, ``C``, ``Gamma``, ``R``, each (T+1, T+1, p, p).
        per_seed: per-seed (simulation) or per-replica arrays with a leading seed axis.
        diagnostics: arrays over steps (e.g. ``min_schur_eig``, ``jitter``).
        settings: run settings (seed, samples, replicas, d, seeds, dtype, ...).
        status: ``"ok"``, ``"diverged"`` or ``"blew_up"``.
        first_bad_step: the first step with a non-finite (or blown-up) value, or -1.
    """

    kind: str
    problem: Problem
    step: np.ndarray
    observables: dict
    kernels: dict | None
    per_seed: dict | None
    diagnostics: dict
    settings: dict
    status: str
    first_bad_step: int

    def __init__(self, kind: str, problem, step, *, observables: dict | None = None,
                 kernels=None, per_seed=None, diagnostics=None, settings=None,
                 status: str = "ok", first_bad_step: int = -1, **named):
        if kind not in TIME_AXES:
            raise ValueError(f"`kind` must be one of {sorted(TIME_AXES)}; got {kind!r}")
        obs = dict(observables or {})
        unknown = sorted(set(obs) - set(REPORTED))
        if unknown:
            raise ValueError(f"unknown observables {unknown}; the table has {list(REPORTED)}")
        for name, est in named.items():
            if name not in REPORTED:
                raise TypeError(f"Trajectory got an unexpected argument {name!r}; observables "
                                f"are {list(REPORTED)}")
            if est is not None:
                obs[name] = est
        missing = [name for name in OBSERVABLES if name not in obs]
        if missing:
            raise ValueError(f"a Trajectory needs the observables {missing}")
        self.kind = kind
        self.problem = problem
        self.step = np.asarray(step)
        self.observables = {name: Estimate(*obs[name]) for name in REPORTED
                            if obs.get(name) is not None}
        self.kernels = kernels
        self.per_seed = per_seed
        self.diagnostics = {} if diagnostics is None else diagnostics
        self.settings = {} if settings is None else settings
        self.status = status
        self.first_bad_step = int(first_bad_step)

    @classmethod
    def from_replicas(cls, kind: str, problem, step, replicas: dict, *,
                      keep_replicas: bool = False, **rest) -> Trajectory:
        """The one builder: mean and standard error over the leading replica (or seed) axis of
        each per-replica array in ``replicas`` (name -> array (R, T+1, ...), names of the
        table); ``keep_replicas`` also keeps the arrays in ``per_seed``. ``rest``: the other
        attributes (kernels, diagnostics, settings, status, first_bad_step)."""
        obs = {name: estimate_from_replicas(replicas[name]) for name in REPORTED
               if replicas.get(name) is not None}
        if keep_replicas and rest.get("per_seed") is None:
            rest["per_seed"] = {name: np.asarray(v) for name, v in replicas.items()
                                if v is not None}
        return cls(kind, problem, step, observables=obs, **rest)

    def __getattr__(self, name: str):
        # called only when normal lookup fails: the observables of the table as attributes
        if name in REPORTED and "observables" in self.__dict__:
            return self.__dict__["observables"].get(name)
        raise AttributeError(f"'Trajectory' object has no attribute {name!r}")

    def __setattr__(self, name: str, value):
        if name in REPORTED:
            if value is None:
                self.observables.pop(name, None)
            else:
                self.observables[name] = Estimate(*value)
            return
        super().__setattr__(name, value)

    @property
    def time(self) -> TimeAxis:
        name, label = TIME_AXES[self.kind]
        return TimeAxis(name, self.step, label)

    @property
    def steps(self) -> int:
        return int(len(self.step)) - 1

    def observable(self, name: str) -> Estimate:
        """A reported observable (``m``, ``Q``, ...) or a derived one (``m_norm``)."""
        if name in self.observables:
            return self.observables[name]
        if name in DERIVED:
            return Estimate(*DERIVED[name].derive(self.observables))
        raise KeyError(f"unknown observable {name!r} for this run; choose from "
                       f"{list(self.observables) + list(DERIVED)}")


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

