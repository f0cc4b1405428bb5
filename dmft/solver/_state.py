"""The sweep state (one replica) and its initialisation: the random draws and the histories.

Random numbers: replica r draws all its standard normals (z_{0..T} ∈ R^p, h* ∈ R^k and ξ per
sample) from ``fold_in(fold_in(key(seed), STREAM_DMFT), r)`` before any chunking, in blocks of
``DRAW_BLOCK`` samples written straight into the histories (``dmft._rng.KEY_SCHEME`` v3), so
results do not depend on ``chunk_size`` (up to float summation order, ~1e-13) and drawing needs
no memory beyond the histories and one block. The draws do not depend on the problem's numbers
(α, η, λ, Δ, m₀, ...): every point of a :func:`dmft.sweep` sees the same samples.
"""

from __future__ import annotations

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
from jaxtyping import Array, Float

from .._precision import HIGHEST
from ._response import make_response
from ._structure import Structure

# Samples per random draw. The normals of a replica are drawn block by block of this many
# samples (block i from fold_in(stream key, i)) straight into the preallocated histories, so
# drawing never holds more than one block's temporaries. Fixed: it is part of the key scheme.
DRAW_BLOCK = 1 << 15
# fold_in constant of the mini-batch selection stream of a replica (sgd:b, epochs:B): the
# uniforms u come from fold_in(replica key, SELECTION_FOLD), block by block like the normals;
# the z/h*/ξ draws (from split(replica key, 3)) are untouched, so other schedules are unchanged.
SELECTION_FOLD = 0x5E1EC7


class SweepState(eqx.Module):
    """Everything one replica carries from step to step.

    Per-sample arrays (``npad`` rows, the last ``npad - n_real`` zero padding):
        z: the standard normals z_{0..T}, flat over (time, unit): (npad, T1 p); read only.
        g: the history g_s, slot s written at step s: (npad, T1 p).
        y: labels of every batch: (npad, nb).
        xf: fixed regressors [1, h*_b, ξ_b] of every batch b: (npad, nb, k + 2).
        w: padding weights (1 real, 0 padding), only when there is padding.
        K: the response's per-sample state (``_response``): the pathwise tangents
            H_s J(s, ·) for ``response="pathwise"``, None for Stein.
        u: mini-batch selection uniforms, one per sample and time (``sgd``: s_t = [u_t < b];
            ``epochs``: the sample's slot in epoch e is ⌊B u_e⌋), only for those schedules.
    Kernels and order parameters (T1 = T + 1 times):
        Qp, C, Gamma, R: (T1, T1, p, p); R0: (T1, p, p); m: (T1, p, k); a: (T1, p).
        L, Linv: the causal factor of Q⊥ and its inverse, ((T1 p), (T1 p)).
    Regression (control variates, not for ``fresh``):
        G: the regressors' Gram; LGinv (``reuse``): the inverse of its Cholesky factor;
        beta, cfull: past coefficients β_s and Ê[g_s xᵀ], flat over (s, unit).
    Nesterov only:
        nesterov_w: (m, a, R(t, ·), R0(t)) of the iterate w_t, while the histories hold the
            look-ahead points y_t where the gradients are taken.
    """

    z: Float[Array, "n Tp"]
    g: Float[Array, "n Tp"]
    y: Float[Array, "n nb"]
    xf: Float[Array, "n nb k2"]
    L: Float[Array, "Tp Tp"]
    Linv: Float[Array, "Tp Tp"]
    Qp: Float[Array, "T1 T1 p p"]
    C: Float[Array, "T1 T1 p p"]
    Gamma: Float[Array, "T1 T1 p p"]
    R: Float[Array, "T1 T1 p p"]
    R0: Float[Array, "T1 p p"]
    m: Float[Array, "T1 p k"]
    a: Float[Array, "T1 p"]
    w: Float[Array, " n"] | None = None
    K: Array | None = None
    u: Array | None = None
    LGinv: Array | None = None
    G: Array | None = None
    beta: Array | None = None
    cfull: Array | None = None
    nesterov_w: tuple | None = None


def _draw_rows(key, n: int, n_alloc: int, tail: tuple, dtype, sampler=jax.random.normal):
    """(n_alloc,) + tail standard normals (or ``sampler``'s draws), rows >= n zero; row block i
    from fold_in(key, i).

    Drawn in float64 whenever JAX's x64 mode is on, then rounded to ``dtype``, so a float32
    solve sees the float64 solve's samples of the same seed (they differ by arithmetic only).

    The partial last block is a second generator call rather than the prefix of a full block's
    draw: one call fewer would compile faster (each call compiles its own copy of the
    generator), but drawing and discarding the rest of a full block slows every warm solve.
    """
    draw = jnp.float64 if jax.config.jax_enable_x64 else dtype
    out = jnp.zeros((n_alloc,) + tail, dtype)
    nfull, rem = divmod(n, DRAW_BLOCK)

    def block(i, rows):
        return sampler(jax.random.fold_in(key, i), (rows,) + tail, draw).astype(dtype)

    def body(i, out):
        return jax.lax.dynamic_update_slice_in_dim(out, block(i, DRAW_BLOCK), i * DRAW_BLOCK, 0)

    if nfull:
        out = jax.lax.fori_loop(0, nfull, body, out)
    if rem:
        out = jax.lax.dynamic_update_slice_in_dim(out, block(nfull, rem), nfull * DRAW_BLOCK, 0)
    return out


def draw_samples(key, n: int, n_alloc: int, T1: int, p: int, k: int, nb: int, dtype,
                 rows=None):
    """A replica's standard normals, drawn from its key before any chunking, into arrays of
    ``n_alloc`` >= n rows (zero padding).

    z: (n_alloc, T1 p), flat over (time, unit); one teacher field h* and label noise ξ per
    sample and batch: (n_alloc, nb, k), (n_alloc, nb). Batch 0's draw does not depend on nb,
    so step 0 is the same for every schedule. ``rows(key, tail)`` draws the rows this device
    holds (default: all of them, :func:`_draw_rows`; a sample shard: ``_sharding``).
    """
    if rows is None:
        def rows(kk, tail):
            return _draw_rows(kk, n, n_alloc, tail, dtype)
    kz, kh, kx = jax.random.split(key, 3)
    z = rows(kz, (T1 * p,))
    hs = rows(kh, (1, k))
    xi = rows(kx, (1,))
    if nb > 1:
        kh2, kx2 = jax.random.fold_in(kh, 1 << 30), jax.random.fold_in(kx, 1 << 30)
        hs = jnp.concatenate([hs, rows(kh2, (nb - 1, k))], axis=1)
        xi = jnp.concatenate([xi, rows(kx2, (nb - 1,))], axis=1)
    return z, hs, xi


def regressor_gram(z, hs, xi, n_real: int, first_row=0, out_dtype=None):
    """Σ_b x_b x_bᵀ over the first ``n_real`` rows (the rest are zero padding),
    x = [1, h*_0..h*_{nb-1}, ξ_0..ξ_{nb-1}, z_0, ..., z_T], by blocks. The rows held here are
    the replica's rows ``first_row, first_row + 1, ...`` (0 unless sample-sharded).

    With ``out_dtype`` wider than the samples' (a mixed-precision float32 solve), the sum is
    taken in ``out_dtype`` block by block of ``DRAW_BLOCK`` rows, each block widened on the fly:
    the products of float32 numbers are exact in float64, and no widened copy of z is held.
    """
    n = z.shape[0]
    one = (jnp.arange(n) + first_row < n_real).astype(z.dtype)[:, None]
    F = jnp.concatenate([one, hs.reshape(n, -1), xi], axis=1)
    zf = z.reshape(n, -1)
    if out_dtype is None or jnp.dtype(out_dtype) == z.dtype:
        Fz = jnp.matmul(F.T, zf, precision=HIGHEST)
        return jnp.block([[jnp.matmul(F.T, F, precision=HIGHEST), Fz],
                          [Fz.T, jnp.matmul(zf.T, zf, precision=HIGHEST)]])

    def gram(F_rows, z_rows):
        x = jnp.concatenate([F_rows, z_rows], axis=1).astype(out_dtype)
        return jnp.matmul(x.T, x, precision=HIGHEST)

    D = F.shape[1] + zf.shape[1]
    nfull, rem = divmod(n, DRAW_BLOCK)

    def body(i, acc):
        def rows(a):
            return jax.lax.dynamic_slice_in_dim(a, i * DRAW_BLOCK, DRAW_BLOCK, axis=0)
        return acc + gram(rows(F), rows(zf))

    out = jnp.zeros((D, D), out_dtype)
    if nfull:
        out = jax.lax.fori_loop(0, nfull, body, out)
    if rem:
        out = out + gram(F[nfull * DRAW_BLOCK:], zf[nfull * DRAW_BLOCK:])
    return out


def draw_replica(st: Structure, key, shard=None):
    """The problem-independent part of a replica: normals and the regressors' Gram.

    ``shard`` (sample-sharded replicas only, see ``_sharding.SampleShard``): this device's rows
    and the sum over the replica's devices."""
    rows = None if shard is None else shard.rows
    z, hs, xi = draw_samples(key, st.n_real, st.npad, st.T1, st.p, st.k, st.nb, st.dtype,
                             rows=rows)
    out = {"z": z, "hs": hs, "xi": xi}
    if st.selection != "none":
        ku = jax.random.fold_in(key, SELECTION_FOLD)
        if rows is None:
            out["u"] = _draw_rows(ku, st.n_real, st.npad, (st.T1,), st.dtype,
                                  sampler=jax.random.uniform)
        else:
            out["u"] = rows(ku, (st.T1,), sampler=jax.random.uniform)
    if st.mode != "fresh":
        if shard is None:
            G = regressor_gram(z, hs, xi, st.n_real, out_dtype=st.kdtype)
        else:
            G = shard.sum(regressor_gram(z, hs, xi, st.n_real, shard.first_row,
                                         out_dtype=st.kdtype))
        out["G"] = G
        if st.mode == "reuse":
            LG = jnp.linalg.cholesky(G)
            out["LGinv"] = jsl.solve_triangular(LG, jnp.eye(G.shape[0], dtype=G.dtype),
                                                lower=True)
    return out


def draw_replicas(st: Structure, keys, shard=None):
    """:func:`draw_replica` of every key (leading replica axis), batched over replicas.

    Batched (``vmap``) rather than one replica at a time (``lax.map``): the draws alone compile
    faster one at a time, but the whole sweep does not, and the warm solve is slower
    (``benchmarks/compile_time.py`` compares them)."""
    return jax.vmap(lambda k: draw_replica(st, k, shard))(keys)


def init_state(st: Structure, problem, draws, first_row=0) -> SweepState:
    """The state of one replica at t = 0, from its draws and the (traced) problem numbers.

    ``first_row``: the replica's row index of this device's first row (sample shards). Per
    sample arrays are in ``st.dtype``, kernels in ``st.kdtype`` (float64 for a mixed-precision
    float32 solve)."""
    p, k, T1, dtype, kd = st.p, st.k, st.T1, st.dtype, st.kdtype
    z, hs, xi = draws["z"], draws["hs"], draws["xi"]
    Tp = T1 * p
    # labels of every batch, computed once: y_b = g*(h*_b) + √Δ ξ_b
    y = (problem.target(hs).astype(kd) + jnp.sqrt(problem.noise) * xi).astype(dtype)
    D = None if st.mode == "fresh" else 1 + st.nb * (k + 1) + Tp
    return SweepState(
        z=z,
        g=jnp.zeros((st.npad, Tp), dtype),
        y=y,
        xf=jnp.concatenate([jnp.ones_like(xi)[:, :, None], hs, xi[:, :, None]], axis=2),
        L=jnp.eye(Tp, dtype=kd),
        Linv=jnp.eye(Tp, dtype=kd),
        Qp=jnp.zeros((T1, T1, p, p), kd).at[0, 0].set(problem.qperp0),
        C=jnp.zeros((T1, T1, p, p), kd),
        Gamma=jnp.zeros((T1, T1, p, p), kd),
        R=jnp.zeros((T1, T1, p, p), kd),
        R0=jnp.zeros((T1, p, p), kd).at[0].set(jnp.eye(p, dtype=kd)),
        m=jnp.zeros((T1, p, k), kd).at[0].set(problem.m0),
        a=jnp.broadcast_to(problem.second_layer, (T1, p)).astype(kd),
        w=((jnp.arange(st.npad) + first_row < st.n_real).astype(dtype) if st.padded
           else None),
        K=make_response(st).init_samples(dtype),
        u=draws.get("u"),
        LGinv=draws.get("LGinv"),
        G=draws.get("G"),
        beta=None if D is None else jnp.zeros((Tp, D), kd),
        cfull=None if D is None else jnp.zeros((Tp, D), kd),
        nesterov_w=((problem.m0.astype(kd), jnp.asarray(problem.second_layer, kd),
                     jnp.zeros((T1, p, p), kd), jnp.eye(p, dtype=kd))
                    if problem.nesterov else None),
    )


