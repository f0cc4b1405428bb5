"""Likely causes of a run that is non-finite at its first step."""

from __future__ import annotations

import math

import numpy as np

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
