"""The causal factor of Q⊥: one block row appended per step (w = L z, docs/THEORY.md §3).

The field of an effective sample is w = L z with L the lower block-Cholesky factor of Q⊥ on
times 0..t. Appending row t leaves earlier rows unchanged, so w_t is correlated correctly with
the w_s already used. The inverse L⁻¹ is kept row by row with L, so that every solve with L is a
matrix product.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .._precision import HIGHEST

# Schur complements with an eigenvalue below this fraction of the marginal variance are clipped.
SCHUR_FLOOR_REL = 1e-8
# ... and at this fraction with momentum (``_step.schur_floor`` says why)
SCHUR_FLOOR_REL_MOMENTUM = 1e-6
# ... and a warning is issued when it is below -SCHUR_WARN_REL times that variance (not PSD).
SCHUR_WARN_REL = 1e-6


def flat_to_blocks(Xflat, T1: int, p: int):
    """(p, T1 p) → (T1, p, p) with block s = Xflat[:, s p:(s+1) p]."""
    return jnp.transpose(Xflat.reshape(p, T1, p), (1, 0, 2))


def append_factor_row(factor, Qp_row, t, p: int, floor_rel: float = SCHUR_FLOOR_REL):
    """Append block row t to the lower block-Cholesky factor of Q⊥ on times 0..t.

    Args:
        factor: ``(L, Linv)``, the flat ((T+1)p, (T+1)p) factor and its inverse; rows and
            columns of blocks >= t hold the identity (start from two identity matrices).
        Qp_row: Q⊥(t, 0..T), shape (T+1, p, p); only blocks s <= t are used.
        t: the step (traced).
        p: block size.

    Returns:
        ((L, Linv) with row t filled, smallest eigenvalue of the Schur complement, jitter
        added, that eigenvalue relative to the marginal variance tr Q⊥(t,t)/p).
        Earlier rows are unchanged, so w_t = Σ_s L(t,s) z_s is correlated correctly with the
        w_s already used. A Schur complement that is not numerically positive definite is
        repaired by clipping its eigenvalues at ``floor_rel`` times its marginal variance.
        The inverse is kept row by row (Linv(t, ·) = Ltt⁻¹ [−L(t, <t) Linv(<t, ·), I]) so
        that the solves with L are matrix products: a batched LAPACK triangular solve inside
        the sweep contends with XLA's thread pool and is much slower than a product.
    """
    L, Linv = factor
    T1 = Qp_row.shape[0]
    idx = jnp.arange(T1)
    B = jnp.where((idx < t)[:, None, None], Qp_row, 0.0)  # (T1, p, p): Q⊥(t, s), s < t
    Bflat = jnp.transpose(B, (1, 0, 2)).reshape(p, T1 * p)  # (p, T1 p)
    # L(t, <t) = Q⊥(t, <t) L_{0:t-1}⁻ᵀ (blocks >= t of Linv are identity, B is zero there)
    Lrow = jnp.matmul(Bflat, Linv.T, precision=HIGHEST)  # (p, T1 p), zero beyond block t-1
    D = Qp_row[t]
    S = D - jnp.matmul(Lrow, Lrow.T, precision=HIGHEST)
    S = 0.5 * (S + S.T)
    scale = jnp.maximum(jnp.trace(D) / p, jnp.finfo(D.dtype).tiny)
    floor = floor_rel * scale
    Sc, ev = clip_eigenvalues(S, floor)
    jitter = jnp.max(jnp.maximum(ev, floor) - ev)
    Ltt = jnp.linalg.cholesky(0.5 * (Sc + Sc.T))
    Ltt_inv = jsl.solve_triangular(Ltt, jnp.eye(p, dtype=Ltt.dtype), lower=True)
    newrow = jax.lax.dynamic_update_slice(Lrow, Ltt, (0, t * p))
    L = jax.lax.dynamic_update_slice(L, newrow, (t * p, 0))
    inv_row = -jnp.matmul(Ltt_inv, jnp.matmul(Lrow, Linv, precision=HIGHEST),
                          precision=HIGHEST)
    inv_row = jax.lax.dynamic_update_slice(inv_row, Ltt_inv, (0, t * p))
    Linv = jax.lax.dynamic_update_slice(Linv, inv_row, (t * p, 0))
    return (L, Linv), ev[0], jitter, ev[0] / scale


@jax.custom_jvp
def clip_eigenvalues(S, floor):
    """(U max(Λ, floor) Uᵀ, Λ) for the symmetric S = U Λ Uᵀ (eigenvalues ascending).

    Its derivative is the Daleckii–Krein formula with divided differences of
    f(λ) = max(λ, floor), which is finite when eigenvalues coincide (Q⊥₀ = I at t = 0): the
    derivative of ``jnp.linalg.eigh``'s eigenvectors divides by eigenvalue gaps and is NaN there.
    Without clipping the tangent of the output is the tangent of S (f is the identity)."""
    ev, U = jnp.linalg.eigh(S)
    ev_c = jnp.maximum(ev, floor)
    return jnp.matmul(U * ev_c[None, :], U.T, precision=HIGHEST), ev


@clip_eigenvalues.defjvp
def _clip_eigenvalues_jvp(primals, tangents):
    S, floor = primals
    dS, dfloor = tangents
    ev, U = jnp.linalg.eigh(S)
    ev_c = jnp.maximum(ev, floor)
    out = jnp.matmul(U * ev_c[None, :], U.T, precision=HIGHEST)
    dSU = jnp.matmul(U.T, jnp.matmul(0.5 * (dS + dS.T), U, precision=HIGHEST),
                     precision=HIGHEST)
    keep = (ev > floor).astype(S.dtype)  # f'(λ)
    gap = ev[:, None] - ev[None, :]
    close = jnp.abs(gap) <= 1e-10 * jnp.maximum(jnp.max(jnp.abs(ev)), floor)
    F = jnp.where(close, 0.5 * (keep[:, None] + keep[None, :]),
                  (ev_c[:, None] - ev_c[None, :]) / jnp.where(close, 1.0, gap))
    inner = F * dSU + jnp.diag((1.0 - keep) * dfloor)
    dout = jnp.matmul(U, jnp.matmul(inner, U.T, precision=HIGHEST), precision=HIGHEST)
    return (out, ev), (dout, jnp.diagonal(dSU))
