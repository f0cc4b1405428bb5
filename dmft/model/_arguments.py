"""How :func:`~dmft.model.make_problem` reads its arguments: a scalar or one value per step, the
momenta, a flag, the default initial condition; each checked, with the argument's name in the
error."""

from __future__ import annotations

import numpy as np

from .._errors import DMFTInputError
from .._validate import check_real


def zero_is_none(beta: np.ndarray):
    """No momentum is stored as None, so that a plain-GD problem keeps its fields (and a
    ``dataclasses.replace`` of its ``lr`` by another length stays valid)."""
    return None if not np.any(beta) else beta


def flag(name: str, value) -> bool:
    if isinstance(value, (bool, np.bool_)):
        return bool(value)
    raise DMFTInputError(f"`{name}` must be True or False; got {name}={value!r}")


def per_step(name: str, value, steps: int, low_open: bool, high=None) -> np.ndarray:
    """A scalar (used at every step) or one value per step, each finite and >= 0 (> 0 when
    ``low_open``; < ``high`` when given), as a float array of shape (steps,)."""
    bounds = dict(low=0.0, low_open=low_open, high=high, high_open=high is not None)
    if np.ndim(value) == 0:
        return np.full(steps, check_real(name, value, **bounds))
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
        check_real(f"{name}[{t}]", v, **bounds)
    return arr


def initial_condition(m0, qperp0, p: int, k: int):
    """``(m0, qperp0)`` with their defaults filled in: m₀ = 0 and Q⊥₀ = I when None, a scalar
    m₀ in every entry, a scalar q as q·I (their shapes are checked by the caller)."""
    if m0 is None:
        m0 = np.zeros((p, k))
    elif np.ndim(m0) == 0:
        m0 = np.full((p, k), check_real("m0", m0))
    if qperp0 is None:
        qperp0 = np.eye(p)
    elif np.ndim(qperp0) == 0:
        qperp0 = check_real("qperp0", qperp0, low=0.0, low_open=True) * np.eye(p)
    return m0, qperp0


def momenta(momentum, momentum_a, steps: int) -> dict:
    """The fields ``momentum`` and ``momentum_a`` of a Problem: β per step in [0, 1); no
    first-layer momentum is None (:func:`zero_is_none`), and ``momentum_a`` None stays None
    (the same as ``momentum``)."""
    return dict(
        momentum=zero_is_none(per_step("momentum", momentum, steps, low_open=False, high=1.0)),
        momentum_a=(None if momentum_a is None
                    else per_step("momentum_a", momentum_a, steps, low_open=False, high=1.0)),
    )
