"""The control-variate regression of a step (docs/THEORY.md §3), one strategy per schedule kind.

x = [1, h*_b, ξ_b, z_s (s <= t, same batch b as step t)] are the Gaussian inputs of an effective
sample, E[x xᵀ] = I exactly. The least-squares coefficients β_t of g_t on x converge to
E[g_t xᵀ], whose blocks are what the DMFT needs: the h* block is E[g_t h*ᵀ] (drift of m) and,
by Stein's identity, the z block is E[δg_t/δw_{0:t}] L. Using β instead of plain sample moments
removes the part of g_t that is linear in the Gaussian inputs from the Monte Carlo noise
(exact, zero variance, in the linear model).

A regression is a small strategy Module: its extra sums over a chunk of samples (beyond the
moments every step takes, see ``_sample.Sums``), the coefficients from the summed moments, and
the row C(t, ·). ``REGRESSIONS`` maps the schedule kinds (``Structure.mode``) to the classes.
"""

from __future__ import annotations

import abc

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .._precision import mm
from ._factor import flat_to_blocks
from ._structure import Structure


class AbstractRegression(eqx.Module):
    """How the step regresses g_t on the Gaussian inputs. ``st``: the sweep's structure."""

    st: Structure = eqx.field(static=True)

    def kernel_words(self) -> tuple[int, int]:
        """Numbers per replica of the regression's state: (shared by every grid point, per
        grid point), for the memory estimate."""
        return 0, 0

    @abc.abstractmethod
    def extra_zeros(self, dtype):
        """The zero of :meth:`extra_sums`'s sums (a pytree; None for no sums)."""

    @abc.abstractmethod
    def extra_sums(self, xf, zt, weighted):
        """Sums over a chunk beyond the common moments. ``xf``: [1, h*, ξ] of this step's
        batch; ``zt``: the chunk's z_t; ``weighted`` zeroes padding rows."""

    @abc.abstractmethod
    def coefficients(self, sums, state, t):
        """(β, v, β_h, β_z, c_full): the coefficients, the correction v of the C estimator,
        the h* and z blocks of β, and Ê[g_t xᵀ] over every regressor (or None)."""

    @abc.abstractmethod
    def c_row(self, sums, beta, v, c_full, state, t, alpha):
        """(C(t, ·) of shape (T1, p, p), the state with the regression's past updated)."""


class FreshRegression(AbstractRegression):
    """``fresh``: each step's samples are new; regress g_t on [1, h*, ξ, z_t] only."""

    def extra_zeros(self, dtype):
        D = self.st.k + 2 + self.st.p
        return jnp.zeros((D, D), dtype)

    def extra_sums(self, xf, zt, weighted):
        """Σ x xᵀ of this step's regressors x = [1, h*, ξ, z_t]."""
        xs_ = jnp.concatenate([xf, zt], axis=1)
        return mm(weighted(xs_).T, xs_)

    def coefficients(self, sums, state, t):
        """(β, v = β(Ĝ − I), β_h, β_z, None)."""
        st = self.st
        k, n = st.k, float(st.n_real)
        xx = sums.regression
        gz_t = flat_to_blocks(sums.mz, st.T1, st.p)[t]
        c = jnp.concatenate([sums.gx, gz_t], axis=1)  # (p, k+2+p)
        beta = jnp.linalg.solve(xx, c.T).T
        v = mm(beta, xx / n) - beta
        return beta, v, beta[:, 1 : k + 1], beta[:, k + 2:], None

    def c_row(self, sums, beta, v, c_full, state, t, alpha):
        """C(t, ·): Ê[ε_t ε_tᵀ] + β_t β_tᵀ with OLS residuals ε (positive semi-definite)."""
        st = self.st
        gg = flat_to_blocks(sums.mg, st.T1, st.p)
        return alpha * (gg / float(st.n_real) - mm(v, beta.T)[None]), state


class BatchRegression(AbstractRegression):
    """``reuse`` and general schedules: regress g_t on every regressor of its batch's past.

    The regressor layout is [1, h*_0..h*_{nb-1}, ξ_0..ξ_{nb-1}, z_0..z_T]; the live ones at step
    t are those of the batch b(t) and the times s <= t that used it. For ``reuse`` they form a
    leading block, so the Gram's Cholesky factor computed once is reused.
    """

    def kernel_words(self) -> tuple[int, int]:
        st = self.st
        D = st.n_regress
        # the Gram (and for reuse its factor's inverse); past β_s and Ê[g_s xᵀ]
        return (2 if st.mode == "reuse" else 1) * D * D, 2 * st.T1 * st.p * D

    def extra_zeros(self, dtype):
        return None

    def extra_sums(self, xf, zt, weighted):
        return None

    def _live(self, t):
        """The regressors live at step t: [1, h*_b, ξ_b, z_s (s <= t, b(s) = b(t))]."""
        st = self.st
        bt = jnp.asarray(st.bt)
        b = bt[t]
        zlive = jnp.repeat((jnp.arange(st.T1) <= t) & (bt == b), st.p)
        hlive = jnp.repeat(jnp.arange(st.nb) == b, st.k)
        xlive = jnp.arange(st.nb) == b
        return b, hlive, xlive, jnp.concatenate([jnp.ones((1,), bool), hlive, xlive, zlive])

    def coefficients(self, sums, state, t):
        """(β, v = β(Ĝ + I), β_h, β_z, Ê[g_t xᵀ] over all regressors)."""
        st = self.st
        k, nb = st.k, st.nb
        n = float(st.n_real)
        b, hlive, xlive, live = self._live(t)
        nfix = 1 + nb * (k + 1)
        gx = sums.gx  # (p, k+2): [1, h*_b, ξ_b]
        gh_full = jnp.where(hlive[None, :], jnp.tile(gx[:, 1 : k + 1], (1, nb)), 0.0)
        gxi_full = jnp.where(xlive[None, :], gx[:, k + 1 :], 0.0)
        # Ê[g_t z_sᵀ] flat over (s, unit) is the moment sum as the pass leaves it
        c_full = jnp.concatenate([gx[:, :1], gh_full, gxi_full, sums.mz], axis=1)
        c = c_full * live[None, :]
        if st.mode == "reuse":
            # The live regressors are a leading block, and (leading block of LG)⁻¹ = leading
            # block of LG⁻¹, which is lower triangular: c G_live⁻¹ = (c LG⁻ᵀ masked to the live
            # block) LG⁻¹, with no masked copy of the (D, D) matrix (each would cost a pass
            # over it, as much as the product).
            u = mm(c, state.LGinv.T) * live[None, :]
            beta = mm(u, state.LGinv)  # (p, D): c Gm⁻¹, zero off the live block
            v = mm(beta, state.G) / n + beta  # β (Ĝ + I)
        else:
            G = state.G
            Gm = jnp.where(live[:, None] & live[None, :], G, 0.0)
            Gm = Gm + jnp.diag(jnp.where(live, 0.0, 1.0))
            beta = jsl.cho_solve((jnp.linalg.cholesky(Gm), True), c.T).T * live[None, :]
            v = mm(beta, G) / n + beta  # β (Ĝ + I)
        bh = jax.lax.dynamic_slice_in_dim(beta, 1 + b * k, k, axis=1)  # E[g_t h*_bᵀ]
        return beta, v, bh, beta[:, nfix:], c_full / n

    def c_row(self, sums, beta, v, c_full, state, t, alpha):
        """C(t,s) = α (Ê[ε_t ε_sᵀ] + β_t β_sᵀ), ε = g − βx the regression residuals.

        Same limit as α Ê[g_t g_sᵀ] (z beyond s is independent of g_s), exact in the linear
        model, and positive semi-definite as a matrix over times by construction. The past
        β_s and Ê[g_s xᵀ] are stacked flat over (s, unit) and written in place before being
        read (the product's operand needs no reshape, so no copy).
        """
        st = self.st
        n = float(st.n_real)
        betas = jax.lax.dynamic_update_slice(state.beta, beta, (t * st.p, 0))
        cfull = jax.lax.dynamic_update_slice(state.cfull, c_full, (t * st.p, 0))
        row = alpha * (
            flat_to_blocks(sums.mg, st.T1, st.p) / n
            - flat_to_blocks(mm(beta, cfull.T), st.T1, st.p)
            + flat_to_blocks(mm(v - c_full, betas.T), st.T1, st.p)
        )
        return row, eqx.tree_at(lambda s: (s.beta, s.cfull), state, (betas, cfull))


# schedule kind (``Structure.mode``) -> regression class
REGRESSIONS: dict[str, type[AbstractRegression]] = {
    "fresh": FreshRegression, "reuse": BatchRegression, "general": BatchRegression}


def make_regression(st: Structure) -> AbstractRegression:
    return REGRESSIONS[st.mode](st)
