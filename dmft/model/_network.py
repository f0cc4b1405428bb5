"""The two-layer network's output f(h) = Σ_j a_j σ(h_j) and its second layer."""

from __future__ import annotations

import math

import jax.numpy as jnp
import numpy as np

from .._validate import check_array, check_choice
from ._activations import Activation


def second_layer_vector(spec, p: int) -> np.ndarray:
    """``alternating`` (+1,-1,+1,...)/√p, ``ones`` 1/√p, or an explicit length-p vector."""
    if isinstance(spec, str):
        check_choice("second_layer", spec, {"alternating", "ones"})
        if spec == "alternating":
            return np.array([(-1.0) ** j for j in range(p)]) / math.sqrt(p)
        return np.ones(p) / math.sqrt(p)
    return check_array("second_layer", spec, (p,))


def sum_last(x):
    """Σ over the last axis; unrolled when it is short (XLA:CPU reduces a size-2..16 minor axis
    several times slower than the equivalent chain of element-wise adds)."""
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
