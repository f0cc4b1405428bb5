"""Input validation: every message names the parameter, the value and the allowed range."""

from __future__ import annotations

import math

import numpy as np

from ._errors import DMFTInputError


def show(value) -> str:
    """``repr`` for messages, with numpy scalars and arrays shown as plain numbers/lists."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    return repr(value)


def check_real(name: str, value, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a float, checking that it is finite and inside the given range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DMFTInputError(
            f"`{name}` must be a real number; got {name}={show(value)}"
        ) from None
    rng = _range_text(low, high, low_open, high_open)
    if not math.isfinite(v):
        raise DMFTInputError(f"`{name}` must be finite and in {rng}; got {name}={show(value)}")
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        raise DMFTInputError(f"`{name}` must be in {rng}; got {name}={show(value)}")
    return v


def check_int(name: str, value, *, low=None, high=None):
    """Return ``value`` as an int, checking that it is an integer inside ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            rng = _range_text(low, high, False, False)
            raise DMFTInputError(f"`{name}` must be an integer in {rng}; got {name}={show(value)}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        rng = _range_text(low, high, False, False)
        raise DMFTInputError(f"`{name}` must be an integer in {rng}; got {name}={show(value)}")
    return v


def check_choice(name: str, value, choices):
    if value not in choices:
        raise DMFTInputError(
            f"`{name}` must be one of {sorted(choices)}; got {name}={show(value)}"
        )
    return value


def check_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DMFTInputError(
            f"`{name}` must be a real array of shape {shape}; got {name}={show(value)}"
        ) from None
    if arr.shape != shape:
        raise DMFTInputError(
            f"Argument `{name}` must have shape {shape}, but has shape {name}.shape={arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise DMFTInputError(f"`{name}` must be finite; got {name}={arr.tolist()}")
    return arr


def check_dtype(dtype) -> str:
    """``dtype`` as ``"float32"`` or ``"float64"`` (a DMFTInputError naming it otherwise)."""
    try:
        name = np.dtype(dtype).name
    except (TypeError, ValueError):
        name = None
    if name not in ("float32", "float64"):
        raise DMFTInputError(
            f"`dtype` must be one of ['float32', 'float64']; got dtype={show(dtype)}"
        )
    return name


def check_x64(dtype) -> None:
    """Refuse float64 when JAX x64 is off (JAX would silently give float32)."""
    import jax

    if check_dtype(dtype) == "float64" and not jax.config.jax_enable_x64:
        raise DMFTInputError(
            "`dtype` float64 was requested but JAX x64 mode is off; call "
            "jax.config.update('jax_enable_x64', True) (or dmft.set_precision('double')) "
            "before creating any array, or pass dtype='float32'"
        )


def _range_text(low, high, low_open, high_open):
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if (low is None or low_open) else "["
    right = ")" if (high is None or high_open) else "]"
    return f"{left}{lo}, {hi}{right}"
