"""Student activations σ with their derivatives σ'."""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable

import jax.numpy as jnp
import jax.scipy.special as jss

from .._validate import check_choice


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
