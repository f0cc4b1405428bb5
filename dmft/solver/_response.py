"""The response estimators: Γ(t, 0:t) = α E[δg_t/δr_{0:t}] from a step's effective samples.

A response is a small strategy Module. The step asks it for its per-sample state (allocated
once, updated in place by the step), its sums over one chunk of samples, and, after the pass
over all chunks, the row Γ(t, ·). ``RESPONSE_CLASSES`` maps the ``response=`` names of
:func:`dmft.solve` to the classes: a new estimator is one :class:`AbstractResponse` subclass and
one entry there (the memory estimate, the pre-flight and the tests read the registry).

- :class:`Stein` (Gaussian integration by parts, exact for any activation) turns the z block of
  the control-variate regression (``_regression``) into Γ(t, 0:t) = α β_z L⁻¹
  (docs/THEORY.md §3);
- :class:`Pathwise` (smooth activations) accumulates E[H_t J(t, s)] along the recursion.
"""

from __future__ import annotations

import abc
from typing import ClassVar

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl

from .._precision import HIGHEST, mm
from ._factor import flat_to_blocks
from ._structure import Structure


class AbstractResponse(eqx.Module):
    """How the step estimates Γ(t, ·). ``st`` is the compiled sweep's :class:`Structure`."""

    st: Structure = eqx.field(static=True)

    # True when the estimator differentiates g along the recursion, which needs a smooth
    # activation (a kink's Dirac mass is missed by the almost-everywhere Hessian)
    smooth_only: ClassVar[bool] = False

    def sample_words(self) -> int:
        """Numbers per sample of the per-sample state (for the memory estimate)."""
        return 0

    def init_samples(self, dtype):
        """The per-sample state of one replica (``npad`` leading rows), or None."""
        return None

    @abc.abstractmethod
    def zeros(self, dtype):
        """The zero of :meth:`chunk_sums`'s sums (a pytree; None for no sums)."""

    @abc.abstractmethod
    def chunk_sums(self, h, y, a_b, etaR, Kc, t, weighted, hess_one, scale=None):
        """(sums over the chunk's samples, the chunk's new per-sample row or None).

        ``h, y, a_b``: the chunk's fields, labels and second layer; ``etaR``: η_s R(t, s) over
        this batch's past; ``Kc``: the chunk's rows of the per-sample state; ``weighted``
        zeroes padding rows; ``hess_one``: ∂g/∂h of one sample; ``scale``: the mini-batch
        factor s_t/b per sample (None without mini-batches)."""

    @abc.abstractmethod
    def row(self, sums, beta_z, L, Linv, t, alpha):
        """Γ(t, ·), (T1, p, p), from the summed ``sums`` and the regression's z block."""


class Stein(AbstractResponse):
    """Γ(t, 0:t) = α E[δg_t/δw_{0:t}] = α β_z L⁻¹ (Gaussian integration by parts)."""

    def zeros(self, dtype):
        return None

    def chunk_sums(self, h, y, a_b, etaR, Kc, t, weighted, hess_one, scale=None):
        return None, None

    def row(self, sums, beta_z, L, Linv, t, alpha):
        st = self.st
        p, T1 = st.p, st.T1
        idx = jnp.arange(T1)
        if st.mode == "fresh":
            Ltt = jax.lax.dynamic_slice(L, (t * p, t * p), (p, p))
            G_tt = alpha * jsl.solve_triangular(Ltt, beta_z.T, lower=True, trans="T").T
            return jnp.where((idx == t)[:, None, None], G_tt[None], 0.0)
        return flat_to_blocks(alpha * mm(beta_z, Linv), T1, p)


class Pathwise(AbstractResponse):
    """Γ(t,s) = α E[H_t J(t,s)], J(t,s) = δr_t/δr_s along the recursion (smooth σ only).

    J(t, s) = I δ_ts − Σ_{u<t} η_u R(t,u) H_u J(u,s); the per-sample tangents H_u J(u, ·) are
    the per-sample state (memory O(N T² p²)).
    """

    smooth_only: ClassVar[bool] = True

    def sample_words(self) -> int:
        return self.st.T1 * self.st.T1 * self.st.p * self.st.p

    def init_samples(self, dtype):
        st = self.st
        return jnp.zeros((st.npad, st.T1, st.T1, st.p, st.p), dtype)

    def zeros(self, dtype):
        return jnp.zeros((self.st.T1, self.st.p, self.st.p), dtype)

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
        return jnp.sum(weighted(Krow), axis=0), Krow

    def row(self, sums, beta_z, L, Linv, t, alpha):
        return alpha * sums / float(self.st.n_real)


# ``response=`` name -> estimator class
RESPONSE_CLASSES: dict[str, type[AbstractResponse]] = {"stein": Stein, "pathwise": Pathwise}
RESPONSES = tuple(RESPONSE_CLASSES)


def make_response(st: Structure) -> AbstractResponse:
    return RESPONSE_CLASSES[st.response](st)
