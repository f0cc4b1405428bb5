"""Per-sample losses ℓ(y, f) and their gradients with respect to the pre-activations."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import DMFTInputError
from .._validate import check_choice
from ._activations import Activation
from ._network import network_output
from ._targets import Target


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
