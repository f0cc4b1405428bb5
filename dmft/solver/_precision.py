"""Matrix-product precision of the solver.

On GPUs, float32 matrix products default to reduced-precision (TF32-class) arithmetic, which
broke float32 solves within a few steps (the Schur complements of Q⊥ went negative). Every
product in the solver therefore asks for ``HIGHEST`` explicitly, and the compiled entry points
also run under ``jax.default_matmul_precision("highest")`` so that products inside library code
(``jnp.linalg``) follow, whatever the user's global setting. On the CPU this changes nothing.
"""

from __future__ import annotations

import jax

HIGHEST = jax.lax.Precision.HIGHEST


def full_precision():
    """Context manager: full-precision matmuls for everything traced inside it."""
    return jax.default_matmul_precision("highest")
