"""Input validation helpers: every message names the parameter, the value and the allowed range."""

from __future__ import annotations

import math

import jax
import numpy as np


class DMFTInputError(ValueError):
    """Raised for invalid user input, before any heavy computation."""


class DivergenceError(FloatingPointError):
    """A run produced non-finite or overflowing values.

    Attributes:
        step: the first GD step at which a bad value was found.
        quantity: what went bad.
        path: where the partial results were saved, if anywhere.
        partial: the partial result object (computed up to ``step``), if any.
    """

    def __init__(self, step: int, quantity: str, path: str | None = None, partial=None):
        self.step = int(step)
        self.quantity = quantity
        self.path = path
        self.partial = partial
        where = f"; partial results saved to {path}" if path else ""
        super().__init__(
            f"run diverged at step {step}: {quantity} is not finite or overflowed{where}. "
            "Likely causes: a learning rate too large for this problem, too few Monte Carlo "
            "samples, or (ODE solvers) too many solver steps."
        )


def check_real(name: str, value, *, low=None, high=None, low_open=False, high_open=False):
    """Return ``value`` as a float, checking that it is finite and inside the given range."""
    try:
        v = float(value)
    except (TypeError, ValueError):
        raise DMFTInputError(f"`{name}` must be a real number; got {name}={value!r}") from None
    rng = _range_text(low, high, low_open, high_open)
    if not math.isfinite(v):
        raise DMFTInputError(f"`{name}` must be finite and in {rng}; got {name}={value!r}")
    bad_low = low is not None and (v <= low if low_open else v < low)
    bad_high = high is not None and (v >= high if high_open else v > high)
    if bad_low or bad_high:
        raise DMFTInputError(f"`{name}` must be in {rng}; got {name}={value!r}")
    return v


def check_int(name: str, value, *, low=None, high=None):
    """Return ``value`` as an int, checking that it is an integer inside ``[low, high]``."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)):
        if isinstance(value, (float, np.floating)) and float(value).is_integer():
            value = int(value)
        else:
            rng = _range_text(low, high, False, False)
            raise DMFTInputError(f"`{name}` must be an integer in {rng}; got {name}={value!r}")
    v = int(value)
    if (low is not None and v < low) or (high is not None and v > high):
        rng = _range_text(low, high, False, False)
        raise DMFTInputError(f"`{name}` must be an integer in {rng}; got {name}={value!r}")
    return v


def check_choice(name: str, value, choices):
    if value not in choices:
        raise DMFTInputError(
            f"`{name}` must be one of {sorted(choices)}; got {name}={value!r}"
        )
    return value


def check_array(name: str, value, shape: tuple[int, ...]) -> np.ndarray:
    try:
        arr = np.asarray(value, dtype=np.float64)
    except (TypeError, ValueError):
        raise DMFTInputError(
            f"`{name}` must be a real array of shape {shape}; got {value!r}"
        ) from None
    if arr.shape != shape:
        raise DMFTInputError(
            f"Argument `{name}` must have shape {shape}, but has shape {name}.shape={arr.shape}"
        )
    if not np.all(np.isfinite(arr)):
        raise DMFTInputError(f"`{name}` must be finite; got {name}={arr.tolist()}")
    return arr


def check_x64(dtype) -> None:
    """Refuse float64 when JAX x64 is off (JAX would silently give float32)."""
    if np.dtype(dtype) == np.float64 and not jax.config.jax_enable_x64:
        raise DMFTInputError(
            "`dtype` float64 was requested but JAX x64 mode is off; call "
            "jax.config.update('jax_enable_x64', True) (or dmft.set_precision('double')) "
            "before creating any array, or pass dtype='float32'"
        )
    check_choice("dtype", np.dtype(dtype).name, {"float32", "float64"})


def _range_text(low, high, low_open, high_open):
    lo = "-inf" if low is None else f"{low:g}"
    hi = "inf" if high is None else f"{high:g}"
    left = "(" if (low is None or low_open) else "["
    right = ")" if (high is None or high_open) else "]"
    return f"{left}{lo}, {hi}{right}"


def free_memory_bytes() -> tuple[int | None, str]:
    """Free memory on JAX's default device (None where it cannot be read) and its name."""
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            st = dev.memory_stats() or {}
            return int(st["bytes_limit"] - st.get("bytes_in_use", 0)), str(dev)
        except (KeyError, TypeError, AttributeError, NotImplementedError):
            return None, str(dev)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "cpu (MemAvailable)"
    except OSError:
        pass
    return None, "cpu"
