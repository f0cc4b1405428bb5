"""The sample side of a step: one pass over a replica's effective samples, chunk by chunk.

For every sample the pass builds the field h_t = w_t − Σ_s η_s R(t,s) g_s + m_t h*, the
gradient g_t (written into slot t of the history) and the step's Monte Carlo sums
(:class:`Sums`): the moments Σ g_t z_sᵀ and Σ g_t g_sᵀ over all slots, the sums of the
regression's inputs, the loss, the second layer's gradient, and the response's and the
regression's own sums. Only sums leave the pass; the histories are updated in place.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp

from .._precision import mm
from ..model import loss, loss_grad_f, loss_grad_h, network_output, sum_last
from ._regression import AbstractRegression
from ._response import AbstractResponse
from ._state import SweepState
from ._structure import Structure


class Sums(eqx.Module):
    """One step's sums over a replica's samples (padding rows excluded), in the kernel dtype.

    mz, mg: Σ g_t z_sᵀ and Σ g_t g_sᵀ, (p, T1 p) flat over (s, unit); slots s > t of g are
        zero, so are their columns of ``mg``.
    g: Σ g_t; gx: Σ g_t [1, h*_b, ξ_b]ᵀ; l: Σ ℓ (every sample, selected or not); fa: Σ ∂ℓ/∂f
        σ(h), the second layer's gradient.
    response, regression: the strategies' own sums (pytrees, None when they have none).
    """

    mz: jax.Array
    mg: jax.Array
    g: jax.Array
    gx: jax.Array
    l: jax.Array  # noqa: E741
    fa: jax.Array
    response: object
    regression: object


def selection_scale(st: Structure, u, b, t):
    """s_t / b per sample: the mini-batch indicator of step t over the expected fraction b.

    ``sgd``: s_t = [u_t < b] (b = 1 selects every sample, whatever the rounding of u);
    ``epochs`` (B = ``st.epoch``, b = 1/B): the sample's slot in epoch e = ⌊t/B⌋ is ⌊B u_e⌋,
    s_t = [slot = t mod B]: one step per epoch, uniformly at random, independently across
    samples (the d → ∞ limit of a random partition into B mini-batches).
    """
    if st.selection == "sgd":
        ut = jax.lax.dynamic_index_in_dim(u, t, axis=1, keepdims=False)
        s = (ut < b) | (b >= 1.0)
    else:
        B = st.epoch
        ue = jax.lax.dynamic_index_in_dim(u, t // B, axis=1, keepdims=False)
        slot = jnp.minimum(jnp.floor(ue * B), B - 1)
        s = slot == (t % B)
    return s.astype(u.dtype) / b


class SamplePass:
    """The chunked pass over one replica's samples at step t (see the module docstring).

    Mini-batches of one dataset (``sgd:b``, ``epochs:B``; docs/THEORY.md §5): every sum built
    from g_t uses the effective gradient g̃_t = (s_t/b) g_t; the train loss uses all samples.
    """

    def __init__(self, st: Structure, act, loss_kind: str, response: AbstractResponse,
                 regression: AbstractRegression):
        self.st, self.act, self.loss_kind = st, act, loss_kind
        self.response, self.regression = response, regression

    def grad_one(self, h, y, a):
        return loss_grad_h(h, y, a, self.act, self.loss_kind)

    def zeros(self) -> Sums:
        st, kd = self.st, self.st.kdtype
        p, Tp = st.p, st.T1 * st.p
        return Sums(mz=jnp.zeros((p, Tp), kd), mg=jnp.zeros((p, Tp), kd),
                    g=jnp.zeros((p,), kd), gx=jnp.zeros((p, st.k + 2), kd),
                    l=jnp.zeros((), kd), fa=jnp.zeros((p,), kd),
                    response=self.response.zeros(kd),
                    regression=self.regression.extra_zeros(kd))

    def __call__(self, problem, state: SweepState, t, coef_z, coef_g, m_s, a_s, etaR_s):
        """(sums, g history, response state) after the pass over every chunk.

        The field of a sample is z_flat · coef_z + g_flat · coef_g + h* m_sᵀ (flat index
        s p + r over the histories); ``etaR_s``: η_s R(t, s) for the response."""
        st, kd = self.st, self.st.kdtype

        def body(carry, ic):
            # The chunk is sliced out of the arrays here rather than scanned over: under the
            # replica vmap, scanning over reshaped (chunk, sample) arrays made XLA transpose
            # whole histories at every step. g (and K) are carried and updated in place.
            sums, ghist, Kall = carry
            new, ghist, Krow = self.chunk(problem, state, ghist, Kall, ic, t,
                                          (coef_z, coef_g, m_s, a_s, etaR_s))
            sums = jax.tree.map(lambda a, b: a + b.astype(kd), sums, new)
            if Krow is not None:
                Kall = jax.lax.dynamic_update_slice(
                    Kall, Krow[:, None], (ic * st.chunk, t) + (0,) * (Kall.ndim - 2))
            return (sums, ghist, Kall), None

        (sums, ghist, Kall), _ = jax.lax.scan(body, (self.zeros(), state.g, state.K),
                                              jnp.arange(st.npad // st.chunk))
        return sums, ghist, Kall

    def chunk(self, problem, state: SweepState, ghist, Kall, ic, t, coefs):
        """(sums of chunk ``ic``, the history with its g_t written, the response's new rows)."""
        st, act = self.st, self.act
        p, k, chunk, Tp = st.p, st.k, st.chunk, st.T1 * st.p
        coef_z, coef_g, m_s, a_s, etaR_s = coefs
        r0 = ic * chunk

        def rows(x):
            return None if x is None else jax.lax.dynamic_slice_in_dim(x, r0, chunk, axis=0)

        def history(x):  # the chunk's rows of a history, every slot
            return jax.lax.dynamic_slice(x, (r0, 0), (chunk, Tp))

        yc, xfc, wgt, Kc, uc = (rows(x) for x in (state.y, state.xf, state.w, Kall, state.u))

        def weighted(x):  # padding rows zeroed (a no-op without padding)
            return x * wgt.reshape((-1,) + (1,) * (x.ndim - 1)) if st.padded else x

        if st.nb == 1:  # static slices: no copies
            y, xf = yc[:, 0], xfc[:, 0]
        else:
            hslot = jnp.asarray(st.bt)[t]
            y = jax.lax.dynamic_index_in_dim(yc, hslot, axis=1, keepdims=False)
            xf = jax.lax.dynamic_index_in_dim(xfc, hslot, axis=1, keepdims=False)
        hst = xf[:, 1 : k + 1]  # xf = [1, h*_b, ξ_b]: (B, k + 2)
        h = mm(history(state.z), coef_z) + mm(history(ghist), coef_g)
        h = h + sum_last(hst[:, None, :] * m_s[None])
        a_b = jnp.broadcast_to(a_s, h.shape)
        g = self.grad_one(h, y, a_b)
        lo = loss(y, network_output(h, a_b, act), self.loss_kind)  # every sample
        dl = loss_grad_f(h, y, a_b, act, self.loss_kind)
        scale = None
        if st.selection != "none":  # g̃ = (s_t/b) g: the mini-batch's effective gradient
            scale = selection_scale(st, uc, problem.batch_fraction, t).astype(st.dtype)
            g = g * scale[:, None]
            dl = dl * scale
        gw = weighted(g)
        resp, Krow = self.response.chunk_sums(h, y, a_b, etaR_s, Kc, t, weighted,
                                              jax.jacfwd(self.grad_one, argnums=0), scale)
        zt = jax.lax.dynamic_slice(state.z, (r0, t * p), (chunk, p))
        # write g_t, then read the new history for Σ g_t g_sᵀ (s <= t; slots > t are 0).
        # Reading the old history after computing g_t (which the write also needs) made
        # XLA copy the whole history twice per step to keep the old values.
        ghist = jax.lax.dynamic_update_slice(ghist, g, (r0, t * p))
        new = Sums(mz=mm(gw.T, history(state.z)), mg=mm(gw.T, history(ghist)),
                   g=jnp.sum(gw, axis=0), gx=mm(gw.T, xf), l=jnp.sum(weighted(lo)),
                   fa=mm(weighted(dl), act.fn(h)), response=resp,
                   regression=self.regression.extra_sums(xf, zt, weighted))
        return new, ghist, Krow
