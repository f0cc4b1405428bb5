"""Input validation helpers: every message names the parameter, the value and the allowed range."""

from __future__ import annotations

import math

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
        causes: the sentence on likely causes (a generic one by default; see
            :func:`step0_causes` for a run that fails at its first step).
        saved: overrides the "; partial results saved to <path>" clause (e.g. to say that the
            partial file could not be written).
    """

    DEFAULT_CAUSES = ("Likely causes: a learning rate too large for this problem, too few Monte "
                      "Carlo samples, or (ODE solvers) too many solver steps.")

    def __init__(self, step: int, quantity: str, path: str | None = None, partial=None,
                 causes: str | None = None, saved: str | None = None):
        self.step = int(step)
        self.quantity = quantity
        self.path = path
        self.partial = partial
        self.causes = causes or self.DEFAULT_CAUSES
        if saved is None:
            saved = f"; partial results saved to {path}" if path else ""
        self.saved = saved
        super().__init__(
            f"run diverged at step {step}: {quantity} is not finite or overflowed{saved}. "
            f"{self.causes}"
        )


def show(value) -> str:
    """``repr`` for messages, with numpy scalars and arrays shown as plain numbers/lists."""
    if isinstance(value, np.generic):
        value = value.item()
    elif isinstance(value, np.ndarray):
        value = value.tolist()
    return repr(value)


def check_problem(problem, name: str = "problem"):
    """Return ``problem`` if it is a :class:`dmft.Problem`; else a DMFTInputError naming it."""
    from .problem import Problem

    if not isinstance(problem, Problem):
        raise DMFTInputError(
            f"`{name}` must be a dmft.Problem (build one with dmft.make_problem); got "
            f"{type(problem).__name__}"
        )
    return problem


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


def free_memory_bytes() -> tuple[int | None, str]:
    """Free memory on JAX's default device (None where it cannot be read) and its name."""
    import jax

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


# --------------------------------------------------------------------------------------------
# Runs that fail at step 0, and runs that blow up without becoming non-finite
# --------------------------------------------------------------------------------------------


def kernel_diagonal(K) -> np.ndarray:
    """``K[:, t, t]`` for a replica-stacked two-time kernel K of shape (r, T, T, ...), as an
    array of shape (r, T, ...); also for T = 0 (a run non-finite already at step 0), where
    ``np.einsum("rtt...->rt...")`` and ``K[:, :0, 0]`` fail."""
    K = np.asarray(K)
    idx = np.arange(K.shape[1])
    return K[:, idx, idx]


# a parameter above this is reported as a likely cause of overflow at step 0
_HUGE = 1e30


def step0_causes(problem) -> str:
    """Likely causes of a run that is non-finite at its first step, most specific first.

    Probes the target on standard-normal inputs (a NaN somewhere, e.g. ``sqrt(z)``, is a
    property of the target, not of the learning rate) and lists the parameters so large that
    the first step overflows. Returns a sentence for :class:`DivergenceError`'s ``causes``.
    """
    causes = []
    bad, n = target_nonfinite(problem.target)
    if bad:
        causes.append(
            f"the target {problem.target.name!r} returns NaN or inf on {bad} of {n} "
            "standard-normal inputs, so the labels are not finite (fix the target function)"
        )
    if float(problem.noise) > _HUGE:
        causes.append(f"the label noise Δ={float(problem.noise):g} makes the labels overflow")
    big = []
    for what, val in (("alpha", problem.alpha), ("lr", problem.lr), ("ridge", problem.ridge),
                      ("m0", problem.m0), ("second_layer", problem.second_layer),
                      ("lr_a", problem.second_layer_lr), ("qperp0", problem.qperp0)):
        v = float(np.max(np.abs(np.asarray(val, dtype=np.float64)), initial=0.0))
        if not math.isfinite(v) or v > _HUGE:
            big.append(f"{what}={v:g}")
    if big:
        causes.append("values so large that the first step overflows: " + ", ".join(big))
    if not causes:
        return ""
    return "Likely cause: " + "; ".join(causes) + "."


def target_nonfinite(target, n: int = 65536) -> tuple[int, int]:
    """(how many of ``n`` standard-normal inputs give a non-finite target value, n)."""
    import jax.numpy as jnp

    z = np.random.default_rng(0).standard_normal((n, target.k))
    z[0] = 0.0
    try:
        y = np.asarray(target(jnp.asarray(z)), dtype=np.float64)
    except Exception:  # noqa: BLE001 - the caller only asks whether the values are finite
        return 0, n
    return int(np.size(y) - np.count_nonzero(np.isfinite(y))), n


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


def overflow_limit(dtype) -> float:
    """|Q| (or |Q⊥|) beyond which a discrete-time run (DMFT sweep or simulation) counts as
    diverged: 1e100, or √(largest float) in float32, whose products would overflow first.
    (The online-SGD ODE stops at 1e8 instead: its state grows exponentially in τ, and
    integrating on to 1e100 would only cost solver steps.)"""
    import numpy as np

    return min(1e100, float(np.sqrt(np.finfo(np.dtype(dtype)).max)))
