"""The target registry: g*(z) acting on the teacher fields z = h* ~ N(0, I_k) (docs/THEORY.md §1).

Registered targets (``TARGETS``), user targets (:func:`custom_target`, checked once by
:func:`check_target`) and the placeholder for a user target read back from a file. Re-exported
by :mod:`dmft.model`, where the rest of the model lives.
"""

from __future__ import annotations

import dataclasses
import math
import weakref
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import DMFTInputError
from .._validate import check_choice, check_int


def _he(j: int, z):
    if j == 1:
        return z
    if j == 2:
        return z * z - 1.0
    if j == 3:
        return z**3 - 3.0 * z
    if j == 4:
        return z**4 - 6.0 * z * z + 3.0
    raise ValueError(j)


@dataclasses.dataclass(frozen=True)
class Target:
    """A target function g*: R^k → R acting on the teacher fields z = h* (last axis of size k)."""

    name: str
    k: int
    fn: Callable
    formula: str

    def __call__(self, z):
        return self.fn(z)


TARGETS: dict[str, Target] = {
    "linear": Target("linear", 1, lambda z: z[..., 0], "z1"),
    "he2": Target("he2", 1, lambda z: _he(2, z[..., 0]) / math.sqrt(2.0), "He2(z1)/sqrt(2)"),
    "he3": Target("he3", 1, lambda z: _he(3, z[..., 0]) / math.sqrt(6.0), "He3(z1)/sqrt(6)"),
    "he4": Target("he4", 1, lambda z: _he(4, z[..., 0]) / math.sqrt(24.0), "He4(z1)/sqrt(24)"),
    "tanh_he3": Target(
        "tanh_he3",
        2,
        lambda z: jnp.tanh(z[..., 0] + z[..., 1] ** 3 - 3.0 * z[..., 1]),
        "tanh(z1 + z2^3 - 3 z2)",
    ),
    "z1_plus_he3": Target(
        "z1_plus_he3",
        2,
        lambda z: z[..., 0] + _he(3, z[..., 1]) / math.sqrt(6.0),
        "z1 + He3(z2)/sqrt(6)",
    ),
    "staircase2": Target(
        "staircase2", 2, lambda z: z[..., 0] + z[..., 0] * z[..., 1], "z1 + z1 z2"
    ),
    "staircase3": Target(
        "staircase3",
        3,
        lambda z: z[..., 0] + z[..., 0] * z[..., 1] + z[..., 0] * z[..., 1] * z[..., 2],
        "z1 + z1 z2 + z1 z2 z3",
    ),
    "z1z2z3": Target("z1z2z3", 3, lambda z: z[..., 0] * z[..., 1] * z[..., 2], "z1 z2 z3"),
    "sign_z1z2z3": Target(
        "sign_z1z2z3",
        3,
        lambda z: jnp.sign(z[..., 0] * z[..., 1] * z[..., 2]),
        "sign(z1 z2 z3)",
    ),
}


def get_target(target) -> Target:
    """Look up a target by name, or accept a ``Target`` built by the user."""
    if isinstance(target, Target):
        if TARGETS.get(target.name) is target:
            return target
        return check_target(target)
    if not isinstance(target, str):
        raise DMFTInputError(
            "`target` must be a registered name (see dmft.TARGETS) or a dmft.Target (see "
            f"dmft.custom_target); got {type(target).__name__}"
        )
    check_choice("target", target, set(TARGETS))
    return TARGETS[target]


def custom_target(fn: Callable, k: int, name: str = "custom", formula: str = "user function"):
    """Wrap a user's JAX-traceable ``fn(z) -> y`` (z has last axis k) as a target.

    The function is checked once (see :func:`check_target`): it must be traceable by
    ``jax.jit`` (written with ``jax.numpy``), map shape (n, k) to (n,), and be finite on
    standard-normal inputs.
    """
    k = check_int("k", k, low=1, high=16)
    if not callable(fn):
        raise DMFTInputError(f"`fn` must be a function of z; got {type(fn).__name__}")
    return check_target(Target(name, k, fn, formula))


# Target objects already checked (a Target is frozen, so one check suffices)
_CHECKED_TARGETS: weakref.WeakSet = weakref.WeakSet()
_PROBE_N = 512


def check_target(target: Target) -> Target:
    """Check a user-built target: ``k`` an integer in [1, 16], ``fn`` traceable by ``jax.jit``,
    output shape (n,) for input (n, k), finite on ``_PROBE_N`` standard-normal inputs (and z = 0).
    Raises DMFTInputError naming the target and what failed."""
    if target in _CHECKED_TARGETS or getattr(target.fn, "dmft_placeholder", False):
        return target
    name = target.name
    k = check_int("k", target.k, low=1, high=16)
    z = np.random.default_rng(0).standard_normal((_PROBE_N, k))
    z[0] = 0.0
    try:
        out = jax.jit(target.fn)(jnp.asarray(z))
    except jax.errors.JAXTypeError as exc:
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else type(exc).__name__
        raise DMFTInputError(
            f"target function `{name}` is not JAX-traceable: write it with jax.numpy (no numpy "
            f"calls, float() or Python if on values); jax.jit(fn) failed with "
            f"{type(exc).__name__}: {first}"
        ) from None
    except Exception as exc:  # noqa: BLE001 - report any failure of user code clearly
        first = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        raise DMFTInputError(
            f"target function `{name}` failed on input of shape ({_PROBE_N}, {k}): "
            f"{type(exc).__name__}: {first}"
        ) from None
    if jnp.shape(out) != (_PROBE_N,):
        raise DMFTInputError(
            f"target function `{name}` must map shape (..., {k}) to (...); "
            f"got output shape {tuple(jnp.shape(out))} for input ({_PROBE_N}, {k})"
        )
    y = np.asarray(out, dtype=np.float64)
    bad = np.nonzero(~np.isfinite(y))[0]
    if bad.size:
        zb = ", ".join(f"{v:.3g}" for v in z[bad[0]])
        raise DMFTInputError(
            f"target function `{name}` returns NaN or inf on {bad.size} of {_PROBE_N} "
            f"standard-normal inputs (e.g. z=[{zb}]); the labels would not be finite"
        )
    _CHECKED_TARGETS.add(target)
    return target


def unavailable_target(name: str, k: int, formula: str = "") -> Target:
    """Placeholder for a user target read back from a file (the function is not stored)."""

    def fn(z):
        raise DMFTInputError(
            f"target {name!r} was a user function and is not stored in the file; "
            "rebuild it with dmft.custom_target to rerun"
        )

    fn.dmft_placeholder = True
    return Target(name, int(k), fn, formula)
