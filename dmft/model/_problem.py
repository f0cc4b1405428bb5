"""The problem: student, target, data, training and initial condition, validated at construction."""

from __future__ import annotations

import json

import equinox as eqx
import numpy as np

from .._errors import DMFTInputError
from .._validate import check_array, check_int, check_real
from ._activations import get_activation
from ._arguments import flag, initial_condition, momenta, per_step
from ._losses import check_pm1_labels, get_loss
from ._network import second_layer_vector
from ._numbers import Numbers, _Structure
from ._schedules import parse_schedule
from ._targets import TARGETS, Target, get_target


class Problem(_Structure, eqx.Module):
    """Student, target, data, training and initial condition (docs/THEORY.md §1).

    Build it with :func:`make_problem` (names and defaults), or directly.

    Attributes:
        p: number of student units.
        activation: name of σ (see ``ACTIVATIONS``).
        second_layer: a at step 0, shape (p,); fixed unless ``lr_a`` is positive.
        target: the target (``Target``), with its ``k``.
        alpha: sample ratio n/d.
        noise: label-noise variance Δ (test error includes Δ/2).
        lr: learning rate per step, shape (T,).
        ridge: λ, the GD step is W ← (1 − η_t λ) W − η_t ∇L.
        schedule: ``reuse`` (same batch every step), ``fresh`` (new batch every step),
            ``repeat:R`` (each fresh batch used for R consecutive steps), ``list:b0,...``
            (step t uses batch b_t; see :func:`batch_index`), or mini-batch SGD on the one
            dataset: ``sgd:b`` (Bernoulli(b) selection) or ``epochs:B`` (a fresh random
            partition into B mini-batches per epoch); see :func:`make_problem`.
        m0: initial overlaps m_0, shape (p, k).
        qperp0: initial orthogonal Gram Q⊥_0, shape (p, p), positive definite.
        lr_a: second-layer learning rate per step, shape (T,) (None or zeros: a fixed).
        loss: name of the loss ℓ (see ``LOSSES``).
        momentum: heavy-ball coefficient β_t per step, shape (T,), in [0, 1) (None: 0, plain
            GD): W_{t+1} = W_t + β_t (W_t − W_{t−1}) − η_t ∇ at W_t, velocity 0 at t = 0 (so β_0
            has no effect); see docs/THEORY.md §10.
        momentum_a: β_t of the second layer (None: the same as ``momentum``).
        nesterov: the gradient is taken at the look-ahead point Y_t = W_t + β_t (W_t − W_{t−1})
            and W_{t+1} = Y_t − η_t ∇ at Y_t (structural: a different compiled program).

    :meth:`numbers` gives the traced pytree that compiled code reads (:class:`Numbers`).
    """

    p: int = eqx.field(static=True)
    activation: str = eqx.field(static=True)
    second_layer: np.ndarray
    target: Target = eqx.field(static=True)
    alpha: float
    noise: float
    lr: np.ndarray
    ridge: float
    schedule: str = eqx.field(static=True)
    m0: np.ndarray
    qperp0: np.ndarray
    lr_a: np.ndarray = None
    loss: str = eqx.field(static=True, default="square")
    momentum: np.ndarray = None
    momentum_a: np.ndarray = None
    nesterov: bool = eqx.field(static=True, default=False)

    def __check_init__(self):
        check_int("p", self.p, low=1, high=64)
        get_activation(self.activation)
        if not isinstance(self.target, Target):
            raise DMFTInputError(
                f"`target` must be a dmft.Target (see dmft.TARGETS, dmft.custom_target); got "
                f"{type(self.target).__name__}"
            )
        get_target(self.target)  # a user-built Target is checked once
        lo = get_loss(self.loss)
        if lo.labels == "pm1":
            check_pm1_labels(self.target, self.noise, lo.name)
        check_real("alpha", self.alpha, low=0.0, low_open=True)
        check_real("noise", self.noise, low=0.0)
        check_real("ridge", self.ridge, low=0.0)
        lr = np.asarray(self.lr)
        if lr.ndim != 1 or lr.shape[0] < 1:
            raise DMFTInputError(f"`lr` must have shape (steps,) with steps >= 1; got {lr.shape}")
        for t, v in enumerate(lr):
            check_real(f"lr[{t}]", v, low=0.0, low_open=True)
        if self.lr_a is not None:
            lra = np.asarray(self.lr_a)
            if lra.shape != lr.shape:
                raise DMFTInputError(
                    f"Argument `lr_a` must have shape {lr.shape} (one per step), but has shape "
                    f"lr_a.shape={lra.shape}"
                )
            for t, v in enumerate(lra):
                check_real(f"lr_a[{t}]", v, low=0.0)
        for name in ("momentum", "momentum_a"):
            beta = getattr(self, name)
            if beta is None:
                continue
            beta = np.asarray(beta)
            if beta.shape != lr.shape:
                raise DMFTInputError(
                    f"Argument `{name}` must have shape {lr.shape} (one per step), but has "
                    f"shape {name}.shape={beta.shape}"
                )
            for t, v in enumerate(beta):
                check_real(f"{name}[{t}]", v, low=0.0, high=1.0, high_open=True)
        if not isinstance(self.nesterov, bool):
            raise DMFTInputError(
                f"`nesterov` must be True or False; got nesterov={self.nesterov!r}")
        if parse_schedule(self.schedule, lr.shape[0]) != self.schedule:
            raise DMFTInputError(f"`schedule` is not canonical: {self.schedule!r}")
        check_array("second_layer", self.second_layer, (self.p,))
        check_array("m0", self.m0, (self.p, self.target.k))
        q0 = check_array("qperp0", self.qperp0, (self.p, self.p))
        if not np.allclose(q0, q0.T, atol=1e-12):
            raise DMFTInputError(f"`qperp0` must be symmetric; got qperp0={q0.tolist()}")
        ev = np.linalg.eigvalsh(q0)
        if ev.min() <= 0:
            raise DMFTInputError(
                f"`qperp0` must be positive definite (eigenvalues > 0); "
                f"got eigenvalues {ev.tolist()}"
            )

    @property
    def steps(self) -> int:
        return int(np.shape(self.lr)[0])  # also for traced numbers (no array conversion)

    @property
    def second_layer_lr(self) -> np.ndarray:
        """Learning rate of the second layer per step (zeros: a fixed second layer)."""
        if self.lr_a is None:
            return np.zeros(self.steps)
        return np.asarray(self.lr_a, dtype=np.float64)

    @property
    def momentum_per_step(self) -> np.ndarray:
        """β_t of the first layer per step (zeros: plain GD)."""
        if self.momentum is None:
            return np.zeros(self.steps)
        return np.asarray(self.momentum, dtype=np.float64)

    @property
    def second_layer_momentum(self) -> np.ndarray:
        """β_t of the second layer per step (``momentum_a``, else ``momentum``)."""
        if self.momentum_a is None:
            return self.momentum_per_step
        return np.asarray(self.momentum_a, dtype=np.float64)

    @property
    def uses_momentum(self) -> bool:
        """Whether any step has a non-zero momentum (first or second layer) or is Nesterov."""
        return bool(self.nesterov or np.any(self.momentum_per_step[1:] > 0)
                    or np.any(self.second_layer_momentum[1:] > 0))

    @property
    def trains_second_layer(self) -> bool:
        return bool(np.any(self.second_layer_lr > 0))

    @property
    def fraction(self) -> float:
        """The mini-batch fraction b (1/B for ``epochs:B``, 1 for full-batch schedules)."""
        return self.batch_schedule.fraction

    def numbers(self, dtype=np.float64) -> Numbers:
        """The problem's numbers as arrays of ``dtype``, with its structure as static fields:
        the one pytree that the solver, the simulator and the observables trace, so that a new
        number never recompiles (see :class:`Numbers`)."""

        def arr(x):
            return np.asarray(x, dtype=np.float64).astype(dtype)

        return Numbers(
            second_layer=arr(self.second_layer),
            alpha=arr(self.alpha),
            noise=arr(self.noise),
            lr=arr(np.append(np.asarray(self.lr, np.float64), 0.0)),
            ridge=arr(self.ridge),
            m0=arr(self.m0),
            qperp0=arr(self.qperp0),
            lr_a=arr(np.append(self.second_layer_lr, 0.0)),
            batch_fraction=arr(self.fraction),
            momentum=arr(np.append(self.momentum_per_step, 0.0)),
            momentum_a=arr(np.append(self.second_layer_momentum, 0.0)),
            p=self.p,
            steps=self.steps,
            activation=self.activation,
            target=self.target,
            loss=self.loss,
            schedule=self.batch_schedule.structural,
            nesterov=self.nesterov,
        )

    def to_dict(self) -> dict:
        """A JSON-serialisable description, enough to rebuild a registered-target problem."""
        return {
            "p": self.p,
            "activation": self.activation,
            "second_layer": np.asarray(self.second_layer).tolist(),
            "target": self.target.name,
            "k": self.target.k,
            "target_formula": self.target.formula,
            "alpha": float(self.alpha),
            "noise": float(self.noise),
            "lr": np.asarray(self.lr).tolist(),
            "ridge": float(self.ridge),
            "schedule": self.schedule,
            "steps": self.steps,
            "m0": np.asarray(self.m0).tolist(),
            "qperp0": np.asarray(self.qperp0).tolist(),
            "lr_a": self.second_layer_lr.tolist(),
            "loss": self.loss,
            "momentum": self.momentum_per_step.tolist(),
            "momentum_a": self.second_layer_momentum.tolist(),
            "nesterov": bool(self.nesterov),
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), sort_keys=True)

    @classmethod
    def from_dict(cls, d: dict, target: Target | None = None) -> Problem:
        """Rebuild from :meth:`to_dict`; ``target`` replaces a target that is not registered."""
        if target is None and d["target"] not in TARGETS:
            raise DMFTInputError(
                f"target {d['target']!r} is not registered; rebuild the problem with "
                "custom_target(...) and make_problem(target=...)"
            )
        return make_problem(
            target=d["target"] if target is None else target,
            p=d["p"],
            activation=d["activation"],
            second_layer=d["second_layer"],
            alpha=d["alpha"],
            noise=d["noise"],
            lr=d["lr"],
            ridge=d["ridge"],
            schedule=d["schedule"],
            steps=d["steps"],
            m0=d["m0"],
            qperp0=d["qperp0"],
            lr_a=d.get("lr_a", 0.0),
            loss=d.get("loss", "square"),
            momentum=d.get("momentum", 0.0),
            momentum_a=d.get("momentum_a"),
            nesterov=bool(d.get("nesterov", False)),
        )


def make_problem(
    target="tanh_he3",
    *,
    p: int = 2,
    activation: str = "relu",
    second_layer="alternating",
    alpha: float = 3.0,
    noise: float = 0.0,
    lr=0.2,
    steps: int = 6,
    ridge: float = 0.0,
    schedule: str = "reuse",
    m0=None,
    qperp0=None,
    lr_a=0.0,
    loss: str = "square",
    momentum=0.0,
    momentum_a=None,
    nesterov: bool = False,
) -> Problem:
    """Build a validated :class:`Problem` from names and defaults.

    Args:
        target: a registered target name (see ``TARGETS``) or a ``Target``.
        p: student width.
        activation: ``relu``, ``erf``, ``tanh``, ``linear`` or ``quadratic``.
        second_layer: ``alternating``, ``ones`` or a length-p vector.
        alpha: n/d, > 0.
        noise: label-noise variance Δ >= 0.
        lr: a scalar η (used at every step) or a length-``steps`` schedule η_t.
        steps: number of GD steps T >= 1.
        ridge: λ >= 0.
        schedule: ``reuse``, ``fresh``, ``repeat:R``, a length-``steps`` list of batch labels,
            or mini-batches of the one dataset: ``sgd:b`` (each sample in the step's mini-batch
            independently with probability b, 0 < b <= 1) or ``epochs:B`` (each epoch of B steps
            visits every sample once, in B disjoint mini-batches of a fresh random partition).
            The mini-batch sum is rescaled by 1/b (b = 1/B for epochs): the expected step is
            the full-batch GD step, and ``sgd:1`` = ``epochs:1`` = ``reuse``.
        m0: p×k initial overlaps (default 0); a scalar fills all entries.
        qperp0: p×p initial orthogonal Gram (default identity); a scalar q gives q·I.
        lr_a: learning rate of the second layer (scalar or per step; 0 keeps it fixed). The
            update is a ← a − η_a (1/d) Σ_ν ∂ℓ_ν/∂a = a − η_a α E[∂ℓ/∂f σ(h)] as d → ∞ (with
            mini-batches: the mini-batch sum rescaled by 1/b, as for the first layer).
        loss: ``square`` (y − f)²/2 or ``logistic`` log(1 + e^{−yf}) (labels must be ±1, no
            label noise).
        momentum: heavy-ball β in [0, 1), a scalar or one per step (0: plain GD). With velocity
            0 at t = 0, W_{t+1} = W_t + β_t (W_t − W_{t−1}) − η_t (λ W_t + ∇L(W_t)); β_0 has no
            effect. Mini-batch schedules and a trained second layer keep their meaning.
        momentum_a: β of the second layer (None: the same as ``momentum``).
        nesterov: take the gradient at the look-ahead point Y_t = W_t + β_t (W_t − W_{t−1}):
            W_{t+1} = Y_t − η_t (λ Y_t + ∇L(Y_t)). Reported m, Q, test error and a are those of
            the iterate W_t; the train loss (and the kernels C, Γ) are at Y_t, where the
            gradient is taken (Y_T = W_T at the last time).
    """
    tgt = get_target(target)
    p = check_int("p", p, low=1, high=64)
    steps = check_int("steps", steps, low=1, high=100_000)
    act = get_activation(activation)
    a = second_layer_vector(second_layer, p)
    lr_arr = per_step("lr", lr, steps, low_open=True)
    lr_a_arr = per_step("lr_a", lr_a, steps, low_open=False)
    m0, qperp0 = initial_condition(m0, qperp0, p, tgt.k)
    return Problem(
        p=p,
        activation=act.name,
        second_layer=a,
        target=tgt,
        alpha=check_real("alpha", alpha, low=0.0, low_open=True),
        noise=check_real("noise", noise, low=0.0),
        lr=lr_arr,
        ridge=check_real("ridge", ridge, low=0.0),
        schedule=parse_schedule(schedule, steps),
        m0=check_array("m0", m0, (p, tgt.k)),
        qperp0=check_array("qperp0", qperp0, (p, p)),
        lr_a=lr_a_arr,
        loss=get_loss(loss).name,
        **momenta(momentum, momentum_a, steps),
        nesterov=flag("nesterov", nesterov),
    )


def check_problem(problem, name: str = "problem"):
    """Return ``problem`` if it is a :class:`dmft.Problem`; else a DMFTInputError naming it."""
    if not isinstance(problem, Problem):
        raise DMFTInputError(
            f"`{name}` must be a dmft.Problem (build one with dmft.make_problem); got "
            f"{type(problem).__name__}"
        )
    return problem


# Below this many selected samples per step, the mini-batch of ``sgd:b`` is too small for the run
# to describe its limit: a warning says so (the run is legitimate, e.g. to see the noise).
FEW_SELECTED = 300


def warn_small_minibatch(problem, n: int, what: str, stacklevel: int = 3) -> None:
    """Warn when ``sgd:b`` selects on average fewer than ``FEW_SELECTED`` of the ``n`` samples
    (``what`` names them: "DMFT samples per replica", "training samples")."""
    if problem.selection != "sgd" or problem.fraction >= 1.0:
        return
    chosen = problem.fraction * n
    if chosen < FEW_SELECTED:
        import warnings

        warnings.warn(
            f"schedule={problem.schedule!r} selects on average b x {n} {what} = {chosen:.3g} "
            f"per step, fewer than {FEW_SELECTED}: the estimate of the mini-batch step is "
            "dominated by their sampling noise; use more samples (or a larger d) or a larger b",
            UserWarning, stacklevel=stacklevel)
