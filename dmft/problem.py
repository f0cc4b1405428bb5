"""The problem definition shared by the DMFT solver and the simulator (spec §1).

Everything here is the *model*: activations, targets, the network output, the loss and its
gradient with respect to the pre-activations. Neither the solver's nor the simulator's machinery
lives here, so that an error in one cannot hide in the other. The target registry lives in
``dmft._targets`` and the batch schedules in ``dmft._schedule``; both are re-exported here.
"""

from __future__ import annotations

import dataclasses
import json
import math
from collections.abc import Callable

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np

from ._checks import (
    DMFTInputError,
    check_array,
    check_choice,
    check_int,
    check_real,
)
from ._schedule import batch_index as batch_index
from ._schedule import epoch_length as epoch_length
from ._schedule import minibatch_fraction as minibatch_fraction
from ._schedule import parse_schedule as parse_schedule
from ._schedule import selection_kind as selection_kind
from ._targets import TARGETS as TARGETS
from ._targets import Target as Target
from ._targets import check_target as check_target
from ._targets import custom_target as custom_target
from ._targets import get_target as get_target
from ._targets import unavailable_target as unavailable_target

# --------------------------------------------------------------------------------------------
# Activations
# --------------------------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class Activation:
    """A student activation σ with its derivative σ'.

    ``smooth`` says whether σ' is differentiable everywhere (needed by the pathwise response
    estimator). ``formula`` is a human-readable definition.
    """

    name: str
    fn: Callable
    deriv: Callable
    smooth: bool
    formula: str


def _relu(h):
    return jnp.maximum(h, 0.0)


def _relu_d(h):
    return (h > 0).astype(h.dtype)


_SQRT2 = math.sqrt(2.0)

ACTIVATIONS: dict[str, Activation] = {
    "relu": Activation("relu", _relu, _relu_d, False, "max(h, 0)"),
    "erf": Activation(
        "erf",
        lambda h: jss.erf(h / _SQRT2),
        lambda h: math.sqrt(2.0 / math.pi) * jnp.exp(-0.5 * h * h),
        True,
        "erf(h/sqrt(2))",
    ),
    "tanh": Activation("tanh", jnp.tanh, lambda h: 1.0 - jnp.tanh(h) ** 2, True, "tanh(h)"),
    "linear": Activation("linear", lambda h: h, jnp.ones_like, True, "h"),
    "quadratic": Activation("quadratic", lambda h: h * h, lambda h: 2.0 * h, True, "h^2"),
}




def get_activation(name: str) -> Activation:
    if isinstance(name, Activation):
        return name
    check_choice("activation", name, set(ACTIVATIONS))
    return ACTIVATIONS[name]



def second_layer_vector(spec, p: int) -> np.ndarray:
    """``alternating`` (+1,-1,+1,...)/√p, ``ones`` 1/√p, or an explicit length-p vector."""
    if isinstance(spec, str):
        check_choice("second_layer", spec, {"alternating", "ones"})
        if spec == "alternating":
            return np.array([(-1.0) ** j for j in range(p)]) / math.sqrt(p)
        return np.ones(p) / math.sqrt(p)
    return check_array("second_layer", spec, (p,))


# --------------------------------------------------------------------------------------------
# The network and the loss (shared by solver and simulator)
# --------------------------------------------------------------------------------------------


def sum_last(x):
    """Σ over the last axis; unrolled when it is short (XLA:CPU reduces a size-2..16 minor axis
    several times slower than the equivalent chain of element-wise adds, measured)."""
    n = x.shape[-1]
    if n > 16:
        return jnp.sum(x, axis=-1)
    out = x[..., 0]
    for j in range(1, n):
        out = out + x[..., j]
    return out


def network_output(h, a, act: Activation):
    """f(h) = Σ_j a_j σ(h_j); ``h`` has the student units on its last axis."""
    return sum_last(act.fn(h) * jnp.broadcast_to(a, jnp.shape(h)))


@dataclasses.dataclass(frozen=True)
class Loss:
    """A per-sample loss ℓ(y, f) of the label y and the network output f.

    Attributes:
        name: registry name.
        fn: ℓ(y, f), element-wise.
        dfdf: ∂ℓ/∂f (y, f), element-wise; g = ∂ℓ/∂h = ∂ℓ/∂f · a ⊙ σ'(h) for every loss.
        labels: ``"real"`` (any label) or ``"pm1"`` (labels must be ±1, no label noise).
        quadratic: ℓ is (y − f)²/2, whose test error has the closed form of
            :mod:`dmft.observables`; otherwise the test loss E[ℓ] is a Gaussian average
            evaluated on fixed nodes.
        classification: report the classification error P(sign f ≠ y) as the test error (and
            E[ℓ] as the test loss); otherwise the test error is the test loss E[ℓ].
        formula: human-readable definition.
    """

    name: str
    fn: Callable
    dfdf: Callable
    labels: str
    quadratic: bool
    classification: bool
    formula: str


LOSSES: dict[str, Loss] = {
    "square": Loss("square", lambda y, f: 0.5 * (y - f) ** 2, lambda y, f: f - y, "real",
                   True, False, "(y - f)^2 / 2"),
    "logistic": Loss("logistic", lambda y, f: jnp.logaddexp(0.0, -y * f),
                     lambda y, f: -y * jax.nn.sigmoid(-y * f), "pm1", False, True,
                     "log(1 + exp(-y f)), y = ±1"),
}


def get_loss(name) -> Loss:
    if isinstance(name, Loss):
        return name
    check_choice("loss", name, set(LOSSES))
    return LOSSES[name]


def loss(y, f, kind="square"):
    """ℓ(y, f) of the loss ``kind`` (default the square loss (y − f)²/2)."""
    return get_loss(kind).fn(y, f)


def loss_grad_h(h, y, a, act: Activation, kind="square"):
    """g = ∂ℓ/∂h = ∂ℓ/∂f (y, f) · a ⊙ σ'(h), shape of ``h``."""
    f = network_output(h, a, act)
    return get_loss(kind).dfdf(y, f)[..., None] * jnp.broadcast_to(a, jnp.shape(h)) * act.deriv(h)


def loss_grad_f(h, y, a, act: Activation, kind="square"):
    """∂ℓ/∂f at the fields ``h`` (the second layer's gradient is ∂ℓ/∂f · σ(h))."""
    return get_loss(kind).dfdf(y, network_output(h, a, act))


def check_pm1_labels(target: Target, noise, loss_name: str) -> None:
    """Refuse a ±1-label loss for a target whose labels are not ±1 (checked on fixed
    Gaussian points) or with label noise."""
    z = np.random.default_rng(0).standard_normal((256, target.k))
    try:
        y = np.asarray(target(jnp.asarray(z)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - a user target failing here fails later anyway
        return
    bad = y[np.abs(np.abs(y) - 1.0) > 1e-12]
    if bad.size:
        raise DMFTInputError(
            f"`loss`={loss_name!r} needs labels y = ±1, but target {target.name!r} "
            f"({target.formula}) gives labels such as {float(bad[0]):.4g}; use a sign target "
            "(e.g. sign_z1z2z3) or loss='square'"
        )
    if float(noise) != 0.0:
        raise DMFTInputError(
            f"`loss`={loss_name!r} needs labels y = ±1, so the label noise must be 0; got "
            f"noise={float(noise)!r}"
        )


# --------------------------------------------------------------------------------------------
# The problem: frozen, validated at construction
# --------------------------------------------------------------------------------------------



class Problem(eqx.Module):
    """Student, target, data, training and initial condition (spec §1).

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
        batch_fraction: leave None (b is read from ``schedule``).
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
    # b, the mini-batch fraction, as a number: None (derived from ``schedule``) except in the
    # solver's numeric copy (see dmft.solver._structure.numeric_problem), where it is traced.
    batch_fraction: np.ndarray = None

    def __check_init__(self):
        check_int("p", self.p, low=1, high=64)
        get_activation(self.activation)
        if not isinstance(self.target, Target):
            raise DMFTInputError(
                f"`target` must be a dmft.Target (see dmft.TARGETS, dmft.custom_target); got "
                f"{type(self.target).__name__}"
            )
        get_target(self.target)  # a user-built Target is checked once
        if self.batch_fraction is not None:
            raise DMFTInputError(
                "`batch_fraction` is set from `schedule` ('sgd:b', 'epochs:B'); leave it None; "
                f"got batch_fraction={self.batch_fraction!r}"
            )
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
    def k(self) -> int:
        return self.target.k

    @property
    def steps(self) -> int:
        return int(np.asarray(self.lr).shape[0])

    @property
    def second_layer_lr(self) -> np.ndarray:
        """Learning rate of the second layer per step (zeros: a fixed second layer)."""
        if self.lr_a is None:
            return np.zeros(self.steps)
        return np.asarray(self.lr_a, dtype=np.float64)

    @property
    def trains_second_layer(self) -> bool:
        return bool(np.any(self.second_layer_lr > 0))

    @property
    def batches(self) -> np.ndarray:
        """Batch label (0, 1, ...) used at each time t = 0..T."""
        return batch_index(self.schedule, self.steps)

    @property
    def act(self) -> Activation:
        return get_activation(self.activation)

    @property
    def loss_fn(self) -> Loss:
        return get_loss(self.loss)

    @property
    def selection(self) -> str:
        """``"sgd"``, ``"epochs"`` (mini-batches of one dataset) or ``"none"``."""
        return selection_kind(self.schedule)

    @property
    def fraction(self) -> float:
        """The mini-batch fraction b (1/B for ``epochs:B``, 1 for full-batch schedules)."""
        return minibatch_fraction(self.schedule)

    @property
    def epoch_length(self) -> int:
        """B for ``epochs:B``, else 1."""
        return epoch_length(self.schedule)

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
    """
    tgt = get_target(target)
    p = check_int("p", p, low=1, high=64)
    steps = check_int("steps", steps, low=1, high=100_000)
    act = get_activation(activation)
    a = second_layer_vector(second_layer, p)
    lr_arr = _per_step("lr", lr, steps, low_open=True)
    lr_a_arr = _per_step("lr_a", lr_a, steps, low_open=False)
    if m0 is None:
        m0 = np.zeros((p, tgt.k))
    elif np.ndim(m0) == 0:
        m0 = np.full((p, tgt.k), check_real("m0", m0))
    if qperp0 is None:
        qperp0 = np.eye(p)
    elif np.ndim(qperp0) == 0:
        qperp0 = check_real("qperp0", qperp0, low=0.0, low_open=True) * np.eye(p)
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
    )


def _per_step(name: str, value, steps: int, low_open: bool) -> np.ndarray:
    """A scalar (used at every step) or one value per step, each finite and >= 0 (> 0 when
    ``low_open``), as a float array of shape (steps,)."""
    if np.ndim(value) == 0:
        return np.full(steps, check_real(name, value, low=0.0, low_open=low_open))
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DMFTInputError(
            f"`{name}` must be a number or {steps} numbers (one per step); got {name}={value!r}"
        ) from None
    if arr.shape != (steps,):
        raise DMFTInputError(
            f"Argument `{name}` must be a scalar or have shape ({steps},) (one per step), "
            f"but has shape {name}.shape={arr.shape}"
        )
    for t, v in enumerate(arr):
        check_real(f"{name}[{t}]", v, low=0.0, low_open=low_open)
    return arr


# Named PRNG streams: root = key(seed); stream = fold_in(root, STREAM_*).
STREAM_DMFT = 1
STREAM_SIM = 2
# 3: reserved (an unused test-error stream in earlier versions); dmft.online uses 4
KEY_SCHEME = (
    "dmft-keys-v3: fold_in(key(seed), stream) -> fold_in(., replica|seed) -> DMFT: split "
    "(z, h*, xi), row blocks of 32768 samples from fold_in(., block), extra batches from "
    "fold_in(., 2**30) / simulation: fold_in(., purpose|step)"
)


def stream_key(seed: int, stream: int):
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    return jax.random.fold_in(jax.random.key(seed), stream)
