"""Monte Carlo estimators of the DMFT step: control-variate regression and the response Γ.

Regression (docs/THEORY.md §3). x = [1, h*_b, ξ_b, z_s (s <= t, same batch b as step t)] are the
Gaussian inputs of an effective sample, E[x xᵀ] = I exactly. The least-squares coefficients β_t
of g_t on x converge to E[g_t xᵀ], whose blocks are what the DMFT needs: the h* block is
E[g_t h*ᵀ] (drift of m) and, by Stein's identity, the z block is E[δg_t/δw_{0:t}] L. Using β
instead of plain sample moments removes the part of g_t that is linear in the Gaussian inputs
from the Monte Carlo noise (exact, zero variance, in the linear model).

Responses. :class:`Stein` (Gaussian integration by parts, exact for any activation) turns the z
block into Γ(t, 0:t) = α β_z L⁻¹; :class:`Pathwise` (smooth activations) accumulates
E[H_t J(t, s)] along the recursion.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .._precision import HIGHEST
from ._factor import flat_to_blocks
from ._structure import Structure


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


class FreshRegression(eqx.Module):
    """``fresh``: each step's samples are new; regress g_t on [1, h*, ξ, z_t] only."""

    st: Structure = eqx.field(static=True)

    def extra_sums(self, xf, zt, weighted):
        """Σ x xᵀ of this step's regressors x = [1, h*, ξ, z_t] (``zt``: the chunk's z_t)."""
        xs_ = jnp.concatenate([xf, zt], axis=1)
        return {"xx": _mm(weighted(xs_).T, xs_)}

    def extra_zeros(self, dtype):
        D = self.st.k + 2 + self.st.p
        return {"xx": jnp.zeros((D, D), dtype)}

    def coefficients(self, acc, state, t):
        """(β, v = β(Ĝ − I), β_h, β_z, None)."""
        k = self.st.k
        n = float(self.st.n_real)
        c = jnp.concatenate([acc["gx"], acc["gz"][t]], axis=1)  # (p, k+2+p)
        beta = jnp.linalg.solve(acc["xx"], c.T).T
        v = _mm(beta, acc["xx"] / n) - beta
        return beta, v, beta[:, 1 : k + 1], beta[:, k + 2:], None

    def c_row(self, acc, beta, v, c_full, state, t, alpha):
        """C(t, ·): Ê[ε_t ε_tᵀ] + β_t β_tᵀ with OLS residuals ε (positive semi-definite)."""
        n = float(self.st.n_real)
        return alpha * (acc["gg"] / n - _mm(v, beta.T)[None]), state


class BatchRegression(eqx.Module):
    """``reuse`` and general schedules: regress g_t on every regressor of its batch's past.

    The regressor layout is [1, h*_0..h*_{nb-1}, ξ_0..ξ_{nb-1}, z_0..z_T]; the live ones at step
    t are those of the batch b(t) and the times s <= t that used it. For ``reuse`` they form a
    leading block, so the Gram's Cholesky factor computed once is reused.
    """

    st: Structure = eqx.field(static=True)

    def extra_sums(self, xf, zt, weighted):
        return {}

    def extra_zeros(self, dtype):
        return {}

    def coefficients(self, acc, state, t):
        """(β, v = β(Ĝ + I), β_h, β_z, Ê[g_t xᵀ] over all regressors)."""
        st = self.st
        p, k, T1, nb = st.p, st.k, st.T1, st.nb
        n = float(st.n_real)
        idx = jnp.arange(T1)
        bt = jnp.asarray(st.bt)
        same = bt == bt[t]
        b = bt[t]
        nfix = 1 + nb * (k + 1)
        gz_flat = jnp.transpose(acc["gz"], (1, 0, 2)).reshape(p, T1 * p)
        zlive = jnp.repeat((idx <= t) & same, p)
        hlive = jnp.repeat(jnp.arange(nb) == b, k)
        xlive = jnp.arange(nb) == b
        live = jnp.concatenate([jnp.ones((1,), bool), hlive, xlive, zlive])
        gx = acc["gx"]  # (p, k+2): [1, h*_b, ξ_b]
        gh_full = jnp.where(hlive[None, :], jnp.tile(gx[:, 1 : k + 1], (1, nb)), 0.0)
        gxi_full = jnp.where(xlive[None, :], gx[:, k + 1 :], 0.0)
        c_full = jnp.concatenate([gx[:, :1], gh_full, gxi_full, gz_flat], axis=1)
        c = c_full * live[None, :]
        if st.mode == "reuse":
            # The live regressors are a leading block, and (leading block of LG)⁻¹ = leading
            # block of LG⁻¹, which is lower triangular: c G_live⁻¹ = (c LG⁻ᵀ masked to the live
            # block) LG⁻¹, with no masked copy of the (D, D) matrix (each costs a pass over it,
            # 21 MB at T = 200, p = 8, as much as the product).
            u = _mm(c, state.LGinv.T) * live[None, :]
            beta = _mm(u, state.LGinv)  # (p, D): c Gm⁻¹, zero off the live block
            v = _mm(beta, state.G) / n + beta  # β (Ĝ + I)
        else:
            G = state.G
            Gm = jnp.where(live[:, None] & live[None, :], G, 0.0)
            Gm = Gm + jnp.diag(jnp.where(live, 0.0, 1.0))
            beta = jsl.cho_solve((jnp.linalg.cholesky(Gm), True), c.T).T * live[None, :]
            v = _mm(beta, G) / n + beta  # β (Ĝ + I)
        bh = jax.lax.dynamic_slice_in_dim(beta, 1 + b * k, k, axis=1)  # E[g_t h*_bᵀ]
        return beta, v, bh, beta[:, nfix:], c_full / n

    def c_row(self, acc, beta, v, c_full, state, t, alpha):
        """C(t,s) = α (Ê[ε_t ε_sᵀ] + β_t β_sᵀ), ε = g − βx the regression residuals.

        Same limit as α Ê[g_t g_sᵀ] (z beyond s is independent of g_s), exact in the linear
        model, and positive semi-definite as a matrix over times by construction. The past
        β_s and Ê[g_s xᵀ] are stacked flat over (s, unit) and written in place before being
        read (the product's operand needs no reshape, so no copy).
        """
        st = self.st
        n = float(st.n_real)
        nfix = 1 + st.nb * (st.k + 1)
        betas = jax.lax.dynamic_update_slice(state.beta, beta, (t * st.p, 0))
        cfull = state.cfull
        if "zg" in acc:
            # live-slot steps (``_live``): the past rows' column of z_t, Ê[g_s z_tᵀ] for s < t
            # (β_t reaches z_t, and row s was written at step s without the future columns)
            cfull = jax.lax.dynamic_update_slice(cfull, acc["zg"].T / n, (0, nfix + t * st.p))
        cfull = jax.lax.dynamic_update_slice(cfull, c_full, (t * st.p, 0))
        row = alpha * (
            acc["gg"] / n
            - flat_to_blocks(_mm(beta, cfull.T), st.T1, st.p)
            + flat_to_blocks(_mm(v - c_full, betas.T), st.T1, st.p)
        )
        return row, eqx.tree_at(lambda s: (s.beta, s.cfull), state, (betas, cfull))


def make_regression(st: Structure):
    return FreshRegression(st) if st.mode == "fresh" else BatchRegression(st)


class Stein(eqx.Module):
    """Γ(t, 0:t) = α E[δg_t/δw_{0:t}] = α β_z L⁻¹ (Gaussian integration by parts)."""

    st: Structure = eqx.field(static=True)

    def chunk_sums(self, h, y, a_b, etaR, Kc, t, weighted, hess_one, scale=None):
        return {}, None

    def zeros(self, dtype):
        return {}

    def row(self, acc, beta_z, L, Linv, t, alpha):
        st = self.st
        p, T1 = st.p, st.T1
        idx = jnp.arange(T1)
        if st.mode == "fresh":
            Ltt = jax.lax.dynamic_slice(L, (t * p, t * p), (p, p))
            G_tt = alpha * jsl.solve_triangular(Ltt, beta_z.T, lower=True, trans="T").T
            return jnp.where((idx == t)[:, None, None], G_tt[None], 0.0)
        return flat_to_blocks(alpha * _mm(beta_z, Linv), T1, p)


class Pathwise(eqx.Module):
    """Γ(t,s) = α E[H_t J(t,s)], J(t,s) = δr_t/δr_s along the recursion (smooth σ only).

    J(t, s) = I δ_ts − Σ_{u<t} η_u R(t,u) H_u J(u,s); the per-sample tangents H_u J(u, ·) are
    kept in the state (memory O(N T² p²)).
    """

    st: Structure = eqx.field(static=True)

    def chunk_sums(self, h, y, a_b, etaR, Kc, t, weighted, hess_one, scale=None):
        st = self.st
        idx = jnp.arange(st.T1)
        eye = jnp.eye(st.p, dtype=h.dtype)
        H = jax.vmap(hess_one)(h, y, a_b)  # (B, p, p)
        if scale is not None:  # mini-batches: H̃_t = (s_t/b) H_t = ∂g̃_t/∂h
            H = H * scale[:, None, None]
        J = -jnp.einsum("uqr,busrx->bsqx", etaR, Kc, precision=HIGHEST)
        J = J + jnp.where((idx == t)[:, None, None], eye, 0.0)[None]
        J = jnp.where((idx <= t)[None, :, None, None], J, 0.0)
        Krow = jnp.einsum("bqr,bsrx->bsqx", H, J, precision=HIGHEST)  # H_t J(t, s)
        return {"hj": jnp.sum(weighted(Krow), axis=0)}, Krow

    def zeros(self, dtype):
        return {"hj": jnp.zeros((self.st.T1, self.st.p, self.st.p), dtype)}

    def row(self, acc, beta_z, L, Linv, t, alpha):
        return alpha * acc["hj"] / float(self.st.n_real)


def make_response(st: Structure):
    return Pathwise(st) if st.pathwise else Stein(st)
