"""Arithmetic precision of the solver: matmul precision and the mixed-precision dtypes.

Matmul precision. On GPUs, float32 matrix products default to reduced-precision (TF32-class)
arithmetic, which broke float32 solves within a few steps (the Schur complements of Q⊥ went
negative). Every product in the solver therefore asks for ``HIGHEST`` explicitly, and the
compiled entry points also run under ``jax.default_matmul_precision("highest")`` so that
products inside library code (``jnp.linalg``) follow, whatever the user's global setting. On
the CPU this changes nothing.

Mixed precision. ``dtype="float32"`` stores the O(N·T·p) per-sample arrays (the histories z
and g, labels, regressors) in float32 and does the per-sample arithmetic in float32, but keeps
everything of size O(T²p²) -- the kernels Q⊥, C, Γ, R, the causal factor L of Q⊥ and its
inverse, the Schur complements, the regression's Gram (factor) and coefficients, and the
Monte Carlo sums -- in the *kernel dtype*, float64 whenever JAX's x64 mode is on. The reason
(tests/precision/test_gpu_path.py::test_float32_long_run_case_runs_to_the_end): the relative
innovation variance of Q⊥ (its smallest Schur complement over the marginal variance) falls
like 1/t, to
1e-5 at T = 100, and Q⊥ on 0..t is a sum of O(t) products of O(t) terms, so its float32
rounding (1e-7 per term) makes it indefinite after a few dozen steps: all-float32 solves
diverged at step 28 (T=200, p=8) and 60 (T=100, p=4) while float64 ran to the end. Without x64
the kernels are float32 too, and a solve that the rounding breaks raises a
DivergenceError that names the step and the remedy (dtype="float64").
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

HIGHEST = jax.lax.Precision.HIGHEST


def full_precision():
    """Context manager: full-precision matmuls for everything traced inside it."""
    return jax.default_matmul_precision("highest")


def kernel_dtype(dtype) -> jnp.dtype:
    """The dtype of the O(T²p²) kernels for per-sample ``dtype``: float64 whenever x64 is on."""
    dt = jnp.dtype(dtype)
    if dt == jnp.float32 and jax.config.jax_enable_x64:
        return jnp.dtype(jnp.float64)
    return dt


def mm(a, b):
    """``a @ b`` at full precision."""
    return jnp.matmul(a, b, precision=HIGHEST)


def overflow_limit(dtype) -> float:
    """|Q| (or |Q⊥|) beyond which a discrete-time run (DMFT sweep or simulation) counts as
    diverged: 1e100, or √(largest float) in float32, whose products would overflow first.
    (The online-SGD ODE stops at 1e8 instead: its state grows exponentially in τ, and
    integrating on to 1e100 would only cost solver steps.)"""
    import numpy as np

    return min(1e100, float(np.sqrt(np.finfo(np.dtype(dtype)).max)))

