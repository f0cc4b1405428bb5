"""The step's passes over the histories, restricted to the live slots (issue #10, item 4).

At step t the field needs z_0..z_t and g_0..g_{t-1}, and the moments need Σ g_t z_sᵀ and
Σ g_t g_sᵀ for s <= t: the slots s > t of both histories are dead (their coefficients are zero,
their moments are masked out downstream). Over a run, the live part is on average half of the
T + 1 slots, so a step that streams every slot reads twice what it needs.

The histories stay (samples, (T + 1) p), flat over (time, unit). Their columns are cut into
blocks of ``st.slot_block`` slots; a step loops over the blocks that hold a live slot,
``t // slot_block + 1`` of them (a ``fori_loop`` whose trip count is the traced t, the same
for every replica and grid point, so it stays a loop under vmap). The last block is shifted
left to end at the last column (``start``), and its columns that the previous block already
covered get zero coefficients (``field``) or are simply written twice with the same sums
(``moments``): no padding of the histories, no change of the draws.

When all slots fit in one block (short horizons, or ``live_columns = 0``, the default) the
code is the plain full-width product, as before.

The control-variate regression (``_estimators.BatchRegression``) also uses Ê[g_s z_u] for
u > s in the rows of past steps s. A full-width step writes those columns at step s; a live-slot
step does not, so it gets column t of the past rows, Σ z_t g_sᵀ, from its pass over g
(``moments(..., zt=...)``).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from .._precision import HIGHEST
from ._structure import Structure


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


class LiveSlots:
    """Products of a chunk of the histories with coefficients, over live slot blocks only."""

    def __init__(self, st: Structure):
        self.p, self.T1, self.chunk = st.p, st.T1, st.chunk
        self.bs = st.slot_block
        self.width = self.bs * self.p  # columns per block
        self.Tp = self.T1 * self.p
        self.blocks = -(-self.T1 // self.bs)

    def _start(self, b):
        return jnp.minimum(b * self.width, self.Tp - self.width)

    def _rows(self, x, r0, b):
        return jax.lax.dynamic_slice(x, (r0, self._start(b)), (self.chunk, self.width))

    def n_live(self, t):
        """Blocks holding a slot s <= t."""
        return t // self.bs + 1

    def field(self, z, g, coef_z, coef_g, r0, t):
        """Σ_{s<=t} z_s L(t,s)ᵀ + Σ_{s<t} g_s coef_g(s) for rows r0 .. r0 + chunk: (chunk, p).

        ``coef_z``, ``coef_g``: (T1 p, p), zero at the dead slots."""
        if self.blocks == 1:
            return _mm(self._rows(z, r0, 0), coef_z) + _mm(self._rows(g, r0, 0), coef_g)
        cols = jnp.arange(self.width)

        def body(b, h):
            s0 = self._start(b)
            new = (s0 + cols >= b * self.width)[:, None]  # not covered by block b - 1

            def coef(c):
                return jnp.where(new, jax.lax.dynamic_slice_in_dim(c, s0, self.width), 0.0)

            return (h + _mm(self._rows(z, r0, b), coef(coef_z))
                    + _mm(self._rows(g, r0, b), coef(coef_g)))

        h0 = jnp.zeros((self.chunk, self.p), z.dtype)
        return jax.lax.fori_loop(0, self.n_live(t), body, h0)

    def moments(self, gw, zt, z, g, r0, t):
        """Σ g_t z_sᵀ and Σ g_t g_sᵀ (``mz``, ``mg``) and, when ``zt`` (the chunk's z_t, padding
        rows zero) is given, Σ z_t g_sᵀ (``zg``), over the chunk's rows: (p, T1 p) each, flat
        over (s, unit); columns past t's block are zero. ``zg`` is read from the same pass
        over g as ``mg`` (one product with [g_t, z_t]; on the CPU that product took 37-42 ms
        against 32-33 ms for g_t alone at 16 × 25000 × 102, so the full-width step, which
        does not need ``zg``, does not ask for it)."""
        p = self.p
        left_g = gw if zt is None else jnp.concatenate([gw, zt.astype(gw.dtype)], axis=1)

        def split(mz, mgz):
            out = {"mz": mz, "mg": mgz[:p]}
            if zt is not None:
                out["zg"] = mgz[p:]
            return out

        if self.blocks == 1:
            return split(_mm(gw.T, self._rows(z, r0, 0)), _mm(left_g.T, self._rows(g, r0, 0)))

        def body(b, mm):
            mz, mgz = mm
            s0 = self._start(b)
            mz = jax.lax.dynamic_update_slice(mz, _mm(gw.T, self._rows(z, r0, b)), (0, s0))
            mgz = jax.lax.dynamic_update_slice(mgz, _mm(left_g.T, self._rows(g, r0, b)),
                                               (0, s0))
            return mz, mgz

        zero = jnp.zeros((p, self.Tp), gw.dtype)
        zero2 = jnp.zeros((left_g.shape[1], self.Tp), gw.dtype)
        return split(*jax.lax.fori_loop(0, self.n_live(t), body, (zero, zero2)))
