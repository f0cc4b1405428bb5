"""Forward-in-time solver of the discrete-time DMFT equations (spec §2).

At step t everything needed (Q⊥(t,·), R(t,·), R₀(t), m_t) depends on earlier steps only; the
effective samples at step t then give C(t,·), Γ(t,·) and m_{t+1}. One forward sweep is therefore
the exact solution: there is no fixed-point iteration.

Monte Carlo layout. ``samples`` effective samples are split into ``replicas`` independent groups
of ``samples // replicas``; each group runs the whole forward sweep on its own (replicas are
vmapped). Reported values are the mean over replicas and errors the standard error of that mean,
which propagates the Monte Carlo noise of the kernels through the dynamics honestly. Within a
replica, samples are processed whole (default) or in chunks of ``chunk_size`` by a ``lax.scan``
that only accumulates sums; chunks bound the per-step temporaries, O(chunk_size·p), not the
O(samples·T·p) histories (z and g), which are the only per-sample state. The replicas run side
by side (vmapped; the working set is replicas × chunk_size samples).

Execution. The whole sweep is one compiled ``lax.while_loop`` over steps, so the histories
are updated in place (slot t of g is written at step t) and nothing is copied between steps;
it stops after the first step with a non-finite output. The causal factor L of Q⊥ is kept
with its inverse, so every solve with L is a matrix product (see ``append_factor_row``).
``benchmarks/dmft_floor.py`` compares the sweep with a lower bound (drawing the normals plus
one pass over the live histories per step).

Estimators. The drift E[g_t h*ᵀ], the response Γ (Stein: Gaussian integration by parts) and the
kernel C come from least-squares coefficients of g_t on the Gaussian inputs [1, h*, ξ, z_{0:t}]
(control variates; exact for the linear model, C positive semi-definite by construction); see
docs/THEORY.md §3. Batch schedules other than ``reuse`` restrict the field's covariance, the
reaction term and the kernels to the times of the step's own batch (docs/THEORY.md §2).

Random numbers: replica r draws all its standard normals (z_{0..T} ∈ R^p, h* ∈ R^k and ξ per
sample) from ``fold_in(fold_in(key(seed), STREAM_DMFT), r)`` before any chunking, in blocks of
``DRAW_BLOCK`` samples written straight into the histories (``dmft.problem.KEY_SCHEME`` v3), so
results do not depend on ``chunk_size`` (up to float summation order, ~1e-13) and drawing needs
no memory beyond the histories and one block.

Memory: ``memory_estimate`` gives the resident arrays (exactly) and an estimated peak; a solve
whose resident arrays exceed the free memory of the device is refused before any compute.
"""

from __future__ import annotations

import math
import time
import warnings

import jax
import jax.numpy as jnp
import jax.scipy.linalg as jsl
import numpy as np

from ._checks import (
    DivergenceError,
    DMFTInputError,
    check_choice,
    check_int,
    check_x64,
    free_memory_bytes,
)
from .observables import test_error as _test_error
from .problem import (
    STREAM_DMFT,
    Problem,
    loss,
    loss_grad_h,
    network_output,
    stream_key,
    sum_last,
)
from .result import Estimate, Trajectory, estimate_from_replicas

RESPONSES = ("stein", "pathwise")
# Schur complements with an eigenvalue below this fraction of the marginal variance are clipped.
SCHUR_FLOOR_REL = 1e-8
# ... and a warning is issued when it is below -SCHUR_WARN_REL times that variance (not PSD).
SCHUR_WARN_REL = 1e-6


# Samples per random draw. The normals of a replica are drawn block by block of this many
# samples (block i from fold_in(stream key, i)) straight into the preallocated histories, so
# drawing never holds more than one block's temporaries. Fixed: it is part of the key scheme.
DRAW_BLOCK = 1 << 15


def _draw_rows(key, n: int, n_alloc: int, tail: tuple, dtype):
    """(n_alloc,) + tail standard normals, rows >= n zero; row block i from fold_in(key, i).

    Drawn in float64 whenever JAX's x64 mode is on, then rounded to ``dtype``, so a float32
    solve sees the float64 solve's samples of the same seed (they differ by arithmetic only,
    which ``test_float32_matches_float64`` measures).
    """
    draw = jnp.float64 if jax.config.jax_enable_x64 else dtype
    out = jnp.zeros((n_alloc,) + tail, dtype)
    nfull, rem = divmod(n, DRAW_BLOCK)

    def block(i, rows):
        return jax.random.normal(jax.random.fold_in(key, i), (rows,) + tail, draw).astype(dtype)

    def body(i, out):
        return jax.lax.dynamic_update_slice_in_dim(out, block(i, DRAW_BLOCK), i * DRAW_BLOCK, 0)

    if nfull:
        out = jax.lax.fori_loop(0, nfull, body, out)
    if rem:
        out = jax.lax.dynamic_update_slice_in_dim(out, block(nfull, rem), nfull * DRAW_BLOCK, 0)
    return out


def _draw_samples(key, n: int, n_alloc: int, T1: int, p: int, k: int, nb: int, dtype):
    """A replica's standard normals, drawn from its key before any chunking (so results do
    not depend on ``chunk_size``), into arrays of ``n_alloc`` >= n rows (zero padding).

    z: (n_alloc, T1 p), flat over (time, unit); one teacher field h* and label noise ξ per
    sample and batch: (n_alloc, nb, k), (n_alloc, nb). Batch 0's draw does not depend on nb,
    so step 0 is the same for every schedule.
    """
    kz, kh, kx = jax.random.split(key, 3)
    z = _draw_rows(kz, n, n_alloc, (T1 * p,), dtype)
    hs = _draw_rows(kh, n, n_alloc, (1, k), dtype)
    xi = _draw_rows(kx, n, n_alloc, (1,), dtype)
    if nb > 1:
        kh2, kx2 = jax.random.fold_in(kh, 1 << 30), jax.random.fold_in(kx, 1 << 30)
        hs = jnp.concatenate([hs, _draw_rows(kh2, n, n_alloc, (nb - 1, k), dtype)], axis=1)
        xi = jnp.concatenate([xi, _draw_rows(kx2, n, n_alloc, (nb - 1,), dtype)], axis=1)
    return z, hs, xi


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
        that the solves with L are matrix products: a batched LAPACK triangular solve took
        25x longer inside the sweep than alone (thread contention with XLA's pool).
    """
    L, Linv = factor
    T1 = Qp_row.shape[0]
    idx = jnp.arange(T1)
    B = jnp.where((idx < t)[:, None, None], Qp_row, 0.0)  # (T1, p, p): Q⊥(t, s), s < t
    Bflat = jnp.transpose(B, (1, 0, 2)).reshape(p, T1 * p)  # (p, T1 p)
    # L(t, <t) = Q⊥(t, <t) L_{0:t-1}⁻ᵀ (blocks >= t of Linv are identity, B is zero there)
    Lrow = Bflat @ Linv.T  # (p, T1 p), zero beyond block t-1
    D = Qp_row[t]
    S = D - Lrow @ Lrow.T
    S = 0.5 * (S + S.T)
    ev, U = jnp.linalg.eigh(S)
    scale = jnp.maximum(jnp.trace(D) / p, jnp.finfo(D.dtype).tiny)
    floor = floor_rel * scale
    ev_c = jnp.maximum(ev, floor)
    jitter = jnp.max(ev_c - ev)
    Sc = (U * ev_c[None, :]) @ U.T
    Ltt = jnp.linalg.cholesky(0.5 * (Sc + Sc.T))
    Ltt_inv = jsl.solve_triangular(Ltt, jnp.eye(p, dtype=Ltt.dtype), lower=True)
    newrow = jax.lax.dynamic_update_slice(Lrow, Ltt, (0, t * p))
    L = jax.lax.dynamic_update_slice(L, newrow, (t * p, 0))
    inv_row = jax.lax.dynamic_update_slice(-Ltt_inv @ (Lrow @ Linv), Ltt_inv, (0, t * p))
    Linv = jax.lax.dynamic_update_slice(Linv, inv_row, (t * p, 0))
    return (L, Linv), ev[0], jitter, ev[0] / scale


def _flat_to_blocks(Xflat, T1, p):
    """(p, T1 p) → (T1, p, p) with block s = Xflat[:, s p:(s+1) p]."""
    return jnp.transpose(Xflat.reshape(p, T1, p), (1, 0, 2))


def _make_step(problem: Problem, T1: int, n_real: int, chunk: int, response: str, dtype):
    padded = n_real % chunk != 0  # the last chunk holds zero-weight padding samples
    # |Q⊥| beyond this counts as divergence (1e100; √max in float32, whose products overflow)
    q_overflow = min(1e100, math.sqrt(float(jnp.finfo(dtype).max)))
    p, k = problem.p, problem.k
    act = problem.act
    lr_a = jnp.asarray(np.append(problem.second_layer_lr, 0.0), dtype)  # (T1,)
    train_a = problem.trains_second_layer
    alpha = float(problem.alpha)
    lam = float(problem.ridge)
    eta = jnp.asarray(np.append(problem.lr, 0.0), dtype)  # (T1,), eta[T] unused
    q0 = jnp.asarray(problem.qperp0, dtype)
    bt = problem.batches  # (T1,) batch used at each time
    nb = int(bt.max()) + 1
    mode = _mode(bt)
    fresh = mode == "fresh"
    same_np = bt[:, None] == bt[None, :]  # same batch at times t and s
    same_all = jnp.asarray(same_np)
    bt_j = jnp.asarray(bt)
    pathwise = response == "pathwise"
    eye = jnp.eye(p, dtype=dtype)
    idx = jnp.arange(T1)

    def grad_one(h, y, a):
        return loss_grad_h(h, y, a, act)

    hess_one = jax.jacfwd(grad_one, argnums=0)  # (p, p): ∂g/∂h

    def _regression(acc, state, t):
        """Least-squares coefficients β_t of g_t on the Gaussian inputs x (control variates).

        x = [1, h*_b, ξ_b, z_s (s <= t, same batch b as step t)] (with h*_b, ξ_b the teacher
        field and label noise of the batch b used at step t); E[x xᵀ] = I exactly.
        Since the regressors have a known law, β_t → E[g_t xᵀ], whose blocks are what the DMFT
        needs: the h* block is E[g_t h*ᵀ] (drift of m) and, by Stein's identity, the z block is
        E[δg_t/δw_{0:t}] L. Using β instead of plain sample moments removes the part of g_t that
        is linear in the Gaussian inputs from the Monte Carlo noise (exact, i.e. zero variance, in
        the linear model). Also returns v_t = β_t (Ĝ + I) (fresh: β_t (Ĝ − I)), Ĝ the sample Gram
        / n, and Ê[g_t xᵀ] over all regressors, for the estimator of C (see ``step``).
        """
        n = float(n_real)
        if fresh:
            c = jnp.concatenate([acc["gx"], acc["gz"][t]], axis=1)  # (p, k+2+p)
            beta = jnp.linalg.solve(acc["xx"], c.T).T
            v = beta @ (acc["xx"] / n) - beta
            return beta, v, beta[:, 1 : k + 1], beta[:, k + 2:], None
        # regressor layout: [1, h*_0..h*_{nb-1}, ξ_0..ξ_{nb-1}, z_0..z_T]; live: this batch's
        b = bt_j[t]
        nfix = 1 + nb * (k + 1)
        gz_flat = jnp.transpose(acc["gz"], (1, 0, 2)).reshape(p, T1 * p)
        zlive = jnp.repeat((idx <= t) & same_all[t], p)
        hlive = jnp.repeat(jnp.arange(nb) == b, k)
        xlive = jnp.arange(nb) == b
        live = jnp.concatenate([jnp.ones((1,), bool), hlive, xlive, zlive])
        gx = acc["gx"]  # (p, k+2): [1, h*_b, ξ_b]
        gh_full = jnp.where(hlive[None, :], jnp.tile(gx[:, 1 : k + 1], (1, nb)), 0.0)
        gxi_full = jnp.where(xlive[None, :], gx[:, k + 1 :], 0.0)
        c_full = jnp.concatenate([gx[:, :1], gh_full, gxi_full, gz_flat], axis=1)
        c = c_full * live[None, :]
        if mode == "reuse":  # live regressors form a leading block: reuse the Cholesky factor
            # (leading block of LG)⁻¹ = leading block of LG⁻¹
            LGi = jnp.where(live[:, None] & live[None, :], state["LGinv"], 0.0)
            LGi = LGi + jnp.diag(jnp.where(live, 0.0, 1.0))
            beta = (c @ LGi.T) @ LGi  # (p, D): c Gm⁻¹
            v = (beta @ state["LG"]) @ state["LG"].T / n + beta  # β (Ĝ + I)
        else:
            G = state["G"]
            Gm = jnp.where(live[:, None] & live[None, :], G, 0.0)
            Gm = Gm + jnp.diag(jnp.where(live, 0.0, 1.0))
            beta = jsl.cho_solve((jnp.linalg.cholesky(Gm), True), c.T).T * live[None, :]
            v = beta @ G / n + beta  # β (Ĝ + I)
        bh = jax.lax.dynamic_slice_in_dim(beta, 1 + b * k, k, axis=1)  # E[g_t h*_bᵀ]
        return beta, v, bh, beta[:, nfix:], c_full / n

    def _stein_row(bz, L, Linv, t):
        """Γ(t, 0:t) = α E[δg_t/δw_{0:t}] = α β_z L⁻¹ (Gaussian integration by parts)."""
        if fresh:
            Ltt = jax.lax.dynamic_slice(L, (t * p, t * p), (p, p))
            G_tt = alpha * jsl.solve_triangular(Ltt, bz.T, lower=True, trans="T").T
            return jnp.where((idx == t)[:, None, None], G_tt[None], 0.0)
        G_flat = alpha * bz @ Linv
        return _flat_to_blocks(G_flat, T1, p)

    def step(state, t):
        """One forward DMFT step for one replica (vmapped over replicas outside)."""
        same = same_all[t][:, None, None]  # (T1, 1, 1): times whose batch is this step's
        # fields of samples of different batches are independent: mask Q⊥ to this batch's times
        Qp_t = jnp.where(same, state["Qp"][t], 0.0)
        (L, Linv), ev_min, jitter, ev_rel = append_factor_row(
            (state["L"], state["Linv"]), Qp_t, t, p)
        Lrow = jax.lax.dynamic_slice_in_dim(L, t * p, p, axis=0)  # (p, T1 p)
        m_t = state["m"][t]
        a_t = state["a"][t]
        # reaction coefficients η_s R(t, s) over this batch's past steps s < t
        etaR = jnp.where(same, eta[:, None, None] * state["R"][t], 0.0)
        hslot = bt_j[t]

        # w_t − Σ_s η_s R(t,s) g_s = z_flat · coef_z + g_flat · coef_g (flat index s p + r)
        coef_z = Lrow.T  # (T1 p, p): [s p + r, q] = L(t, s)[q, r]
        coef_g = -jnp.transpose(etaR, (0, 2, 1)).reshape(T1 * p, p)

        def chunk_fn(carry, ic):
            # The chunk is sliced out of the arrays here rather than scanned over: under the
            # replica vmap, scanning over reshaped (chunk, sample) arrays made XLA transpose
            # whole histories at every step. g (and K) are carried and updated in place.
            acc, ghist, Kall = carry

            def rows(x):
                return None if x is None else jax.lax.dynamic_slice_in_dim(x, ic * chunk,
                                                                           chunk, axis=0)

            zc, yc, xfc, wgt, gc, Kc = (rows(x) for x in (state["z"], state["y"], state["xf"],
                                                          state.get("w"), ghist, Kall))

            def weighted(x):  # padding rows zeroed (a no-op without padding)
                return x * wgt.reshape((-1,) + (1,) * (x.ndim - 1)) if padded else x

            if nb == 1:  # static slices: no copies
                y, xf = yc[:, 0], xfc[:, 0]
            else:
                y = jax.lax.dynamic_index_in_dim(yc, hslot, axis=1, keepdims=False)
                xf = jax.lax.dynamic_index_in_dim(xfc, hslot, axis=1, keepdims=False)
            hst = xf[:, 1 : k + 1]  # xf = [1, h*_b, ξ_b]: (B, k + 2)
            h = zc @ coef_z + gc @ coef_g + sum_last(hst[:, None, :] * m_t[None])
            a_b = jnp.broadcast_to(a_t, h.shape)
            g = grad_one(h, y, a_b)
            f = network_output(h, a_b, act)
            lo = loss(y, f)
            gw = weighted(g)
            new = {
                "mz": gw.T @ zc,  # (p, T1 p): Σ g_t z_sᵀ
                "g": jnp.sum(gw, axis=0),
                "gx": gw.T @ xf,
                "l": jnp.sum(weighted(lo)),
            }
            if train_a:  # Σ (f − y) σ(h): the second layer's gradient
                new["fa"] = weighted(f - y) @ act.fn(h)
            Krow = None
            if pathwise:
                H = jax.vmap(hess_one)(h, y, a_b)  # (B, p, p)
                # J(t, s) = I δ_ts − Σ_{u<t} η_u R(t,u) H_u J(u,s) = I δ_ts − Σ_u etaR_u K_u(s)
                J = -jnp.einsum("uqr,busrx->bsqx", etaR, Kc)
                J = J + jnp.where((idx == t)[:, None, None], eye, 0.0)[None]
                J = jnp.where((idx <= t)[None, :, None, None], J, 0.0)
                Krow = jnp.einsum("bqr,bsrx->bsqx", H, J)  # H_t J(t, s)
                new["hj"] = jnp.sum(weighted(Krow), axis=0)
            if fresh:
                zt = jax.lax.dynamic_slice_in_dim(zc, t * p, p, axis=1)
                xs_ = jnp.concatenate([xf, zt], axis=1)
                new["xx"] = weighted(xs_).T @ xs_
            # write g_t, then read the new history for Σ g_t g_sᵀ (s <= t; slots > t are 0).
            # Reading the old history after computing g_t (which the write also needs) made
            # XLA copy the whole history twice per step to keep the old values.
            ghist = jax.lax.dynamic_update_slice(ghist, g, (ic * chunk, t * p))
            gc_new = jax.lax.dynamic_slice_in_dim(ghist, ic * chunk, chunk, axis=0)
            new["mg"] = gw.T @ gc_new
            acc = jax.tree.map(jnp.add, acc, new)
            if pathwise:
                Kall = jax.lax.dynamic_update_slice(
                    Kall, Krow[:, None], (ic * chunk, t) + (0,) * (Kall.ndim - 2))
            return (acc, ghist, Kall), None

        acc0 = {
            "mz": jnp.zeros((p, T1 * p), dtype),
            "mg": jnp.zeros((p, T1 * p), dtype),
            "g": jnp.zeros((p,), dtype),
            "gx": jnp.zeros((p, k + 2), dtype),
            "l": jnp.zeros((), dtype),
        }
        if train_a:
            acc0["fa"] = jnp.zeros((p,), dtype)
        if fresh:
            acc0["xx"] = jnp.zeros((k + 2 + p, k + 2 + p), dtype)
        if pathwise:
            acc0["hj"] = jnp.zeros((T1, p, p), dtype)
        npad = state["z"].shape[0]
        nc = npad // chunk
        (acc, ghist, Kall), _ = jax.lax.scan(
            chunk_fn, (acc0, state["g"], state.get("K")), jnp.arange(nc))
        new_state = dict(state)
        new_state["g"] = ghist
        if pathwise:
            new_state["K"] = Kall
        acc["gz"] = _flat_to_blocks(acc["mz"], T1, p)
        acc["gg"] = _flat_to_blocks(acc["mg"], T1, p)

        n = float(n_real)
        past = (idx <= t)[:, None, None]
        beta, v, beta_h, beta_z, c_full = _regression(acc, state, t)
        if fresh:  # Ê[ε_t ε_tᵀ] + β_t β_tᵀ with OLS residuals ε (positive semi-definite)
            C_row = alpha * (acc["gg"] / n - (v @ beta.T)[None])
        else:
            # C(t,s) = α (Ê[ε_t ε_sᵀ] + β_t β_sᵀ), ε = g − βx the regression residuals: the
            # same limit as α Ê[g_t g_sᵀ] (z beyond s is independent of g_s), exact in the
            # linear model, and positive semi-definite as a matrix over times by construction.
            # past β_s and Ê[g_s xᵀ] stacked flat over (s, unit), written in place before
            # being read (the product's operand needs no reshape, so no copy)
            betas = jax.lax.dynamic_update_slice(state["beta"], beta, (t * p, 0))
            cfull = jax.lax.dynamic_update_slice(state["cfull"], c_full, (t * p, 0))
            C_row = alpha * (
                acc["gg"] / n
                - _flat_to_blocks(beta @ cfull.T, T1, p)
                + _flat_to_blocks((v - c_full) @ betas.T, T1, p)
            )
        # C(t, s) for s <= t: zero across independent batches
        C_row = jnp.where(past & same, C_row, 0.0)
        if pathwise:
            G_row = alpha * acc["hj"] / n
        else:
            G_row = _stein_row(beta_z, L, Linv, t)
        G_row = jnp.where(past & same, G_row, 0.0)

        C = state["C"].at[t].set(C_row)
        C = C.at[:, t].set(jnp.swapaxes(C_row, -1, -2))
        Gam = state["Gamma"].at[t].set(G_row)

        # weight side: m_{t+1}, R(t+1, ·), R0(t+1), Q⊥(t+1, ·)
        decay = 1.0 - eta[t] * lam
        more = t + 1 < T1
        tp = jnp.minimum(t + 1, T1 - 1)
        m_next = decay * m_t - eta[t] * alpha * beta_h  # β's h* block = E[g_t h*ᵀ]
        m = state["m"].at[tp].set(jnp.where(more, m_next, state["m"][tp]))
        if train_a:
            a_next = a_t - lr_a[t] * alpha * acc["fa"] / n
            new_state["a"] = state["a"].at[tp].set(jnp.where(more, a_next, state["a"][tp]))
        R = state["R"]
        R_next = decay * R[t] - eta[t] * jnp.einsum("uqr,usrx->sqx", G_row, R)
        R_next = R_next + jnp.where((idx == t)[:, None, None], eye, 0.0)
        R = R.at[tp].set(jnp.where(more, R_next, R[tp]))
        R0 = state["R0"]
        R0_next = decay * R0[t] - eta[t] * jnp.einsum("uqr,urx->qx", G_row, R0)
        R0 = R0.at[tp].set(jnp.where(more, R0_next, R0[tp]))
        A = eta[None, :, None, None] * R  # A(t1, s) = η_s R(t1, s)
        Qrow = jnp.einsum("qr,rx,tyx->tqy", R0[tp], q0, R0)
        Qrow = Qrow + jnp.einsum("sqr,sury,tuvy->tqv", A[tp], C, A)
        Qrow = jnp.where((idx <= tp)[:, None, None], Qrow, 0.0)
        Qp = state["Qp"]
        Qp_new = Qp.at[tp].set(Qrow).at[:, tp].set(jnp.swapaxes(Qrow, -1, -2))
        Qp = jnp.where(more, Qp_new, Qp)

        if not fresh:
            new_state["beta"] = betas
            new_state["cfull"] = cfull
        new_state.update(L=L, Linv=Linv, C=C, Gamma=Gam, m=m, R=R, R0=R0, Qp=Qp)
        loss_mean = acc["l"] / n
        out = {
            "train_loss": loss_mean,
            "min_schur_eig": ev_min,
            "jitter": jitter,
            "min_schur_eig_rel": ev_rel,
        }
        finite = (
            jnp.all(jnp.isfinite(m_next))
            & jnp.all(jnp.isfinite(Qrow))
            & jnp.all(jnp.isfinite(C_row))
            & jnp.all(jnp.isfinite(G_row))
            & jnp.isfinite(loss_mean)
            & (jnp.max(jnp.abs(Qrow)) < q_overflow)
        )
        out["finite"] = finite
        return new_state, out

    return step


def _mode(bt) -> str:
    """``reuse`` (one batch), ``fresh`` (a new batch at every time) or ``general``."""
    nb = int(bt.max()) + 1
    return "reuse" if nb == 1 else ("fresh" if nb == len(bt) else "general")


def _init_state(problem, key, n_real, npad, T1, pathwise, dtype, chunk):
    p, k = problem.p, problem.k
    nb = int(problem.batches.max()) + 1
    mode = _mode(problem.batches)
    z, hs, xi = _draw_samples(key, n_real, npad, T1, p, k, nb, dtype)  # padded with zeros
    pad = npad - n_real
    Tp = T1 * p
    # labels of every batch, computed once: y_b = g*(h*_b) + √Δ ξ_b
    y = problem.target(hs) + math.sqrt(problem.noise) * xi  # (npad, nb)
    state = {
        # histories, flat over (time, neuron): z_s (drawn) and g_s (slot s written at step s)
        "z": z,
        "g": jnp.zeros((npad, Tp), dtype),
        "y": y,
        # fixed regressors [1, h*_b, ξ_b] of every batch b
        "xf": jnp.concatenate([jnp.ones_like(xi)[:, :, None], hs, xi[:, :, None]], axis=2),
        "L": jnp.eye(Tp, dtype=dtype),
        "Linv": jnp.eye(Tp, dtype=dtype),
        "Qp": jnp.zeros((T1, T1, p, p), dtype).at[0, 0].set(jnp.asarray(problem.qperp0, dtype)),
        "C": jnp.zeros((T1, T1, p, p), dtype),
        "Gamma": jnp.zeros((T1, T1, p, p), dtype),
        "R": jnp.zeros((T1, T1, p, p), dtype),
        "R0": jnp.zeros((T1, p, p), dtype).at[0].set(jnp.eye(p, dtype=dtype)),
        "m": jnp.zeros((T1, p, k), dtype).at[0].set(jnp.asarray(problem.m0, dtype)),
        "a": jnp.broadcast_to(jnp.asarray(problem.second_layer, dtype), (T1, p)),
    }
    if pad:  # sample weights: 0 on the padding
        state["w"] = jnp.concatenate([jnp.ones((n_real,), dtype), jnp.zeros((pad,), dtype)])
    if pathwise:
        state["K"] = jnp.zeros((npad, T1, T1, p, p), dtype)
    if mode != "fresh":
        G = _regressor_gram(z, hs, xi, n_real)
        if mode == "reuse":
            state["LG"] = jnp.linalg.cholesky(G)
            state["LGinv"] = jsl.solve_triangular(
                state["LG"], jnp.eye(G.shape[0], dtype=dtype), lower=True)
        else:
            state["G"] = G
        state["beta"] = jnp.zeros((T1 * p, G.shape[0]), dtype)
        state["cfull"] = jnp.zeros((T1 * p, G.shape[0]), dtype)
    return state


def _regressor_gram(z, hs, xi, n_real):
    """Σ_b x_b x_bᵀ over the first ``n_real`` rows (the rest are zero padding),
    x = [1, h*_0..h*_{nb-1}, ξ_0..ξ_{nb-1}, z_0, ..., z_T], by blocks."""
    n = z.shape[0]
    one = (jnp.arange(n) < n_real).astype(z.dtype)[:, None]
    F = jnp.concatenate([one, hs.reshape(n, -1), xi], axis=1)
    zf = z.reshape(n, -1)
    Fz = F.T @ zf
    return jnp.block([[F.T @ F, Fz], [Fz.T, zf.T @ zf]])


RUNTIME_BYTES = 300_000_000  # compiled programs and XLA's runtime, measured on CPU


def memory_estimate(problem: Problem, samples: int, *, replicas: int = 16,
                    chunk_size: int | None = None, response: str = "stein",
                    dtype="float64") -> dict:
    """Memory a :func:`solve` needs, in bytes.

    Returns a dict with
        ``state``: exactly the arrays this solver keeps resident for the whole sweep
            (histories z and g, labels, fixed regressors, padding weights, the pathwise
            tangents, and every replica's kernels and factors); a solve is refused when they
            do not fit in the free memory.
        ``peak``: ``state`` plus the transients seen on XLA:CPU: one block of draws for all
            replicas (about 1.5 float64 words per normal, with the random bits), one more copy
            of the kernels, and 0.3 GB of runtime. Peak RSS above the interpreter's, measured
            (estimated), float64: (T, N, p) = (7, 1e6, 2): 0.69 (0.70) GB; (28, 1e5, 2): 0.43
            (0.47) GB; (100, 1e5, 4): 1.68 (1.86) GB.
    """
    T1, p, k = problem.steps + 1, problem.p, problem.k
    bt = problem.batches
    nb = int(bt.max()) + 1
    mode = _mode(bt)
    n_real = samples // replicas
    chunk = n_real if chunk_size is None else min(chunk_size, n_real)
    npad = -(-n_real // chunk) * chunk
    item = np.dtype(dtype).itemsize
    # per sample: z and g histories, labels, fixed regressors, weights (only with padding)
    per = 2 * T1 * p + nb + nb * (k + 2) + (1 if npad > n_real else 0)
    if response == "pathwise":
        per += T1 * T1 * p * p
    # per replica: Q⊥, C, Γ, R; R0; m; a; L and L⁻¹; the regression's Gram factor(s), β and c
    kernels = 4 * T1 * T1 * p * p + T1 * p * p + T1 * p * k + T1 * p + 2 * (T1 * p) ** 2
    if mode != "fresh":
        D = 1 + nb * (k + 1) + T1 * p
        kernels += (2 if mode == "reuse" else 1) * D * D + 2 * T1 * p * D
    state = item * replicas * (npad * per + kernels)
    draw_item = 8 if (jax.config.jax_enable_x64 or item == 8) else 4
    block = int(1.5 * draw_item * replicas * min(n_real, DRAW_BLOCK) * T1 * p)
    peak = state + block + item * replicas * kernels + RUNTIME_BYTES
    return {"state": int(state), "peak": int(peak)}


def _check_memory(problem, samples, replicas, chunk_size, response, dtype) -> None:
    """Refuse a solve whose resident arrays cannot fit; warn when the estimated peak may not."""
    need = memory_estimate(problem, samples, replicas=replicas, chunk_size=chunk_size,
                           response=response, dtype=dtype)
    avail, where = free_memory_bytes()
    if avail is None:
        return
    what = (f"samples={samples}, steps={problem.steps}, p={problem.p}, response={response!r}, "
            f"dtype={np.dtype(dtype).name}")
    if need["state"] > avail:
        raise DMFTInputError(
            f"`samples` too large for this machine: {what} keeps {need['state'] / 1e9:.2f} GB "
            f"resident (histories N (T+1) p x 2 and kernels), but {avail / 1e9:.2f} GB is free "
            f"on {where}; use fewer samples (several solves with other seeds can be pooled)"
            + (", dtype='float32'" if np.dtype(dtype).itemsize == 8 else "")
            + (" or response='stein'" if response == "pathwise" else "")
        )
    if need["peak"] > avail:
        warnings.warn(
            f"{what} needs an estimated {need['peak'] / 1e9:.2f} GB at its peak, more than the "
            f"{avail / 1e9:.2f} GB free on {where}; it may run out of memory",
            ResourceWarning,
            stacklevel=3,
        )


def solve(
    problem: Problem,
    samples: int = 200_000,
    *,
    seed: int = 0,
    replicas: int = 16,
    chunk_size: int | None = None,
    response: str = "stein",
    dtype="float64",
    progress: bool | None = None,
    keep_replicas: bool = False,
) -> Trajectory:
    """Solve the discrete-time DMFT forward in time.

    Args:
        problem: the :class:`~dmft.problem.Problem`.
        samples: total number N of effective samples (split over ``replicas``).
        seed: user seed; the same seed gives bitwise the same result.
        replicas: independent groups used for the Monte Carlo error (>= 2).
        chunk_size: samples per chunk inside a replica; ``None`` (default) processes a whole
            replica at once, which is fastest (chunks are sliced out of the histories, about
            2x slower per step, measured at T=50, N=1e6). Chunks bound the per-step
            temporaries (O(chunk·p), and O(chunk·T²p²) for the pathwise response), not the
            O(N·T·p) histories. Results do not depend on it beyond rounding.
        response: ``"stein"`` (Gaussian integration by parts; exact for any activation) or
            ``"pathwise"`` (derivatives along the recursion; smooth activations only; memory
            O(N T² p²)).
        dtype: ``"float64"`` (needs JAX x64) or ``"float32"``.
        progress: tqdm bar over steps; ``None`` shows it only on a terminal.
        keep_replicas: also return the per-replica trajectories in ``per_seed`` (leading
            replica axis), e.g. for estimates that combine several solves replica by replica.

    Returns:
        A :class:`~dmft.result.Trajectory` of kind ``"dmft"`` with kernels and diagnostics.

    Raises:
        DMFTInputError: invalid arguments (before any computation).
        DivergenceError: a non-finite value appeared; ``.partial`` holds the steps before it.
    """
    if not isinstance(problem, Problem):
        raise DMFTInputError(f"`problem` must be a dmft.Problem; got {type(problem).__name__}")
    replicas = check_int("replicas", replicas, low=2, high=4096)
    samples = check_int("samples", samples, low=2 * replicas, high=10**10)
    if samples % replicas:
        raise DMFTInputError(
            f"`samples` must be a multiple of `replicas`={replicas}; got samples={samples}"
        )
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    check_choice("response", response, set(RESPONSES))
    check_x64(dtype)
    dtype = jnp.dtype(dtype)
    n_real = samples // replicas
    if chunk_size is None:
        chunk = n_real
    else:
        chunk = min(check_int("chunk_size", chunk_size, low=1), n_real)
    if response == "pathwise" and not problem.act.smooth:
        warnings.warn(
            f"response='pathwise' with the non-smooth activation {problem.activation!r}: the "
            "almost-everywhere Hessian misses the kink's Dirac mass and biases Γ (spec §6); "
            "use response='stein'",
            UserWarning,
            stacklevel=2,
        )
    T1 = problem.steps + 1
    nb = int(problem.batches.max()) + 1
    fresh = _mode(problem.batches) == "fresh"
    n_regress = problem.k + 2 + problem.p if fresh else 1 + nb * (problem.k + 1) + T1 * problem.p
    if n_real < 4 * n_regress:
        raise DMFTInputError(
            f"`samples` per replica (samples/replicas = {n_real}) must be at least "
            f"{4 * n_regress} = 4 x the {n_regress} regressors of the response estimator "
            f"(1 + batches (k + 1) + (T+1) p); got samples={samples}, replicas={replicas}"
        )
    npad = -(-n_real // chunk) * chunk
    _check_memory(problem, samples, replicas, chunk_size, response, dtype)

    root = stream_key(seed, STREAM_DMFT)
    keys = jax.vmap(lambda r: jax.random.fold_in(root, r))(jnp.arange(replicas))
    init, sweep, test_err = _compiled(problem, T1, n_real, npad, chunk, response, dtype)

    from tqdm.auto import tqdm

    bar = tqdm(total=T1, desc="DMFT steps", disable=(not progress) if progress is not None
               else None, leave=False)
    t_start = time.perf_counter()
    _PROGRESS[0] = bar
    try:
        n_run, state, outs_arr = sweep(init(keys))
        n_run = int(n_run)  # waits for the sweep
        jax.effects_barrier()
    finally:
        _PROGRESS[0] = None
        bar.close()
    elapsed = time.perf_counter() - t_start
    outs_arr = jax.device_get(outs_arr)
    outs = [{k_: v[t] for k_, v in outs_arr.items()} for t in range(n_run)]
    first_bad = -1
    if n_run and not np.all(outs[-1]["finite"]):
        first_bad = n_run - 1

    n_done = len(outs) if first_bad < 0 else first_bad  # steps whose outputs are all good
    st = jax.device_get({k_: state[k_] for k_ in ("m", "Qp", "C", "Gamma", "R", "a")})
    traj = _assemble(problem, st, outs, n_done, first_bad, dict(
        samples=samples, replicas=replicas, seed=seed, chunk_size=chunk_size,
        response=response, dtype=dtype.name, wall_time_s=elapsed,
    ), keep_replicas, test_err)
    rel = traj.diagnostics["min_schur_eig_rel"]
    if np.any(rel < -SCHUR_WARN_REL):
        bad = np.nonzero(rel < -SCHUR_WARN_REL)[0]
        warnings.warn(
            f"Q⊥ was not numerically positive definite at steps {bad.tolist()}: smallest Schur "
            f"eigenvalue {float(np.min(rel)):.3e} of the marginal variance; eigenvalues clipped "
            f"(max jitter {float(np.max(traj.diagnostics['jitter'])):.3e}); see diagnostics",
            RuntimeWarning,
            stacklevel=2,
        )
    _warn_noisy_response(traj)
    if first_bad >= 0:
        raise DivergenceError(first_bad, "DMFT kernels/overlaps", partial=traj)
    return traj


# Γ(t, ·) (t < T, the rows that drive the dynamics) whose largest standard error exceeds this
# fraction of its largest entry is reported. The replica errors of m, Q stay honest either way;
# the warning says that the estimate is inefficient.
GAMMA_NOISE_WARN = 1.0


def _warn_noisy_response(traj) -> None:
    """Warn when the response kernel is dominated by Monte Carlo noise (it drives R and Q⊥)."""
    G = traj.kernels["Gamma"]
    if G.value.shape[0] <= 1:
        return
    size = np.max(np.abs(G.value[:-1]), axis=(1, 2, 3))
    noise = np.max(G.error[:-1], axis=(1, 2, 3))
    bad = np.nonzero(noise > GAMMA_NOISE_WARN * np.maximum(size, 1e-300))[0]
    if len(bad):
        rel = traj.diagnostics["min_schur_eig_rel"]
        warnings.warn(
            f"the response Γ(t, ·) has a Monte Carlo error above {GAMMA_NOISE_WARN:.0%} of its "
            f"size at steps {bad.tolist()} (largest error {float(np.max(noise)):.3g}); smallest "
            f"relative Schur complement {float(np.min(rel)):.2e}. Likely cause: little new "
            "randomness per step (small learning rate, slow dynamics), which the Stein estimator "
            "amplifies. Use more samples, or response='pathwise' for a smooth activation.",
            RuntimeWarning,
            stacklevel=3,
        )


_CACHE: dict = {}
_PROGRESS: list = [None]  # the tqdm bar of the running solve, ticked from inside the sweep


def _tick(t, min_eig):
    bar = _PROGRESS[0]
    if bar is not None:
        if int(t) == 0:
            bar.reset(total=bar.total)  # the rate should not count compilation
        bar.update(1)
        bar.set_postfix(step=int(t), min_eig=f"{float(min_eig):.2e}")


def _make_sweep(step_r, T1):
    """The whole forward sweep in one compiled loop (histories are updated in place).

    Runs steps 0..T while every output is finite; returns (steps run, final state, per-step
    outputs stacked over time). A step with a non-finite output is the last one run.
    """

    def sweep(state):
        shapes = jax.eval_shape(step_r, state, jnp.asarray(0))[1]
        outs0 = jax.tree.map(lambda sd: jnp.zeros((T1,) + sd.shape, sd.dtype), shapes)

        def cond(carry):
            t, ok = carry[0], carry[1]
            return (t < T1) & ok

        def body(carry):
            t, _, st, outs = carry
            st, o = step_r(st, t)
            outs = jax.tree.map(lambda buf, v: buf.at[t].set(v), outs, o)
            jax.debug.callback(_tick, t, jnp.min(o["min_schur_eig"]))
            return t + 1, jnp.all(o["finite"]), st, outs

        t, _, state, outs = jax.lax.while_loop(
            cond, body, (jnp.asarray(0), jnp.asarray(True), state, outs0))
        return t, state, outs

    return sweep


def _compiled(problem, T1, n_real, npad, chunk, response, dtype):
    """Jitted (init, sweep) for this problem and these sizes, cached so repeated solves of the
    same problem (other seeds, other replicas counts) do not recompile."""
    key = (problem.to_json(), id(problem.target.fn), T1, n_real, npad, chunk, response,
           dtype.name, bool(jax.config.jax_enable_x64))
    if key not in _CACHE:
        if len(_CACHE) >= 32:
            _CACHE.pop(next(iter(_CACHE)))
        pathwise = response == "pathwise"
        init = jax.jit(jax.vmap(
            lambda kk: _init_state(problem, kk, n_real, npad, T1, pathwise, dtype, chunk)
        ))
        step_r = jax.vmap(_make_step(problem, T1, n_real, chunk, response, dtype),
                          in_axes=(0, None))  # replicas
        test_err = _replica_test_error(problem)
        _CACHE[key] = (init, jax.jit(_make_sweep(step_r, T1), donate_argnums=0), test_err)
    return _CACHE[key]


def _replica_test_error(problem):
    """Jitted e_g(m, Q, a) for every replica: one replica at a time (lax.map), since the
    quadrature's working array grows with nodes × steps × p² (2 GB for all 16 replicas at once
    at T=100, p=4, k=2)."""
    return jax.jit(lambda m, Q, a: jax.lax.map(lambda x: _test_error(problem, *x), (m, Q, a)))


def _assemble(problem, st, outs, n_done, first_bad, settings, keep_replicas,
              test_err) -> Trajectory:
    """Replica means and standard errors for the first ``n_done`` steps."""
    T = n_done
    m = st["m"][:, :T]
    Qperp = st["Qp"][:, :T, :T]
    Qtt = np.einsum("rttqv->rtqv", Qperp) if T else Qperp[:, :0, 0]
    Q = np.einsum("rtqk,rtvk->rtqv", m, m) + Qtt
    a = st["a"][:, :T]
    eg = np.asarray(test_err(jnp.asarray(m), jnp.asarray(Q), jnp.asarray(a))) if T else \
        np.zeros((m.shape[0], 0))
    tl = np.stack([o["train_loss"] for o in outs[:T]], axis=1) if T else np.zeros((m.shape[0], 0))
    kernels = {
        "Qperp": estimate_from_replicas(Qperp),
        "C": estimate_from_replicas(st["C"][:, :T, :T]),
        "Gamma": estimate_from_replicas(st["Gamma"][:, :T, :T]),
        "R": estimate_from_replicas(st["R"][:, :T, :T]),
    }
    diag = {
        "min_schur_eig": np.array([np.min(o["min_schur_eig"]) for o in outs[:T]]),
        "jitter": np.array([np.max(o["jitter"]) for o in outs[:T]]),
        "min_schur_eig_rel": np.array([np.min(o["min_schur_eig_rel"]) for o in outs[:T]]),
    }
    return Trajectory(
        kind="dmft",
        problem=problem,
        step=np.arange(T),
        m=estimate_from_replicas(m),
        Q=estimate_from_replicas(Q),
        test_error=estimate_from_replicas(eg),
        train_loss=estimate_from_replicas(tl),
        kernels=kernels,
        a=estimate_from_replicas(a) if problem.trains_second_layer else None,
        per_seed=dict(m=m, Q=Q, test_error=eg, train_loss=tl) if keep_replicas else None,
        diagnostics=diag,
        settings=settings,
        status="ok" if first_bad < 0 else "diverged",
        first_bad_step=first_bad,
    )


__all__ = ["solve", "append_factor_row", "memory_estimate", "RESPONSES", "Estimate"]
