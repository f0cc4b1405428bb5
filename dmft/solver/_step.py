"""One forward DMFT step and the whole sweep in one compiled loop.

Execution. The sweep is one ``lax.while_loop`` over steps, so the histories are updated in
place (slot t of g is written at step t) and nothing is copied between steps; it stops after
the first step with a non-finite output. The problem's numbers (α, η_t, λ, Δ, m₀, Q⊥₀, a, η_a)
are traced arguments: a new value reuses the compiled program.
"""

from __future__ import annotations

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp

from .._precision import HIGHEST, full_precision, overflow_limit
from ..model._losses import loss, loss_grad_f, loss_grad_h
from ..model._network import network_output, sum_last
from ._estimators import make_regression, make_response
from ._factor import append_factor_row, flat_to_blocks
from ._live import LiveSlots
from ._state import SweepState, draw_replicas, init_state
from ._structure import Structure


def _mm(a, b):
    return jnp.matmul(a, b, precision=HIGHEST)


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


def make_step(st: Structure, act, loss_kind: str = "square", shard=None):
    """``step(problem, state, t) -> (state, outputs)`` for one replica; ``problem`` traced.

    Mini-batches of one dataset (``sgd:b``, ``epochs:B``; docs/THEORY.md §5): every quantity
    the DMFT builds from g_t (the reaction history, the regression, C, Γ, the drift, the second
    layer) uses the effective gradient g̃_t = (s_t/b) g_t; the train loss uses all samples.
    ``shard`` (``_sharding.Shard``, multi-device only): its ``sum`` adds the per-step sums over
    the devices that hold the replica's samples.
    """
    p, k, T1, chunk = st.p, st.k, st.T1, st.chunk
    dtype, kd = st.dtype, st.kdtype  # histories; kernels and sums (see _precision)
    q_overflow = overflow_limit(dtype)
    regression = make_regression(st)
    response = make_response(st)
    same_all = jnp.asarray([[bs == bt for bs in st.bt] for bt in st.bt])  # same batch at t, s
    bt_j = jnp.asarray(st.bt)
    idx = jnp.arange(T1)
    eye = jnp.eye(p, dtype=kd)
    nb = st.nb
    live = LiveSlots(st)
    # the regression's past rows need Ê[g_s z_t] (s < t), which a full-width step wrote at step
    # s already; a live-slot step did not, and reads it from its pass over g instead
    need_zg = st.mode != "fresh" and live.blocks > 1

    def grad_one(h, y, a):
        return loss_grad_h(h, y, a, act, loss_kind)

    hess_one = jax.jacfwd(grad_one, argnums=0)  # (p, p): ∂g/∂h

    def step(problem, state: SweepState, t):
        eta = problem.lr  # (T1,), eta[T] = 0 unused
        alpha = problem.alpha
        same = same_all[t][:, None, None]  # (T1, 1, 1): times whose batch is this step's
        # fields of samples of different batches are independent: mask Q⊥ to this batch's times
        Qp_t = jnp.where(same, state.Qp[t], 0.0)
        (L, Linv), ev_min, jitter, ev_rel = append_factor_row((state.L, state.Linv), Qp_t, t, p)
        Lrow = jax.lax.dynamic_slice_in_dim(L, t * p, p, axis=0)  # (p, T1 p)
        m_t = state.m[t]
        a_t = state.a[t]
        # reaction coefficients η_s R(t, s) over this batch's past steps s < t
        etaR = jnp.where(same, eta[:, None, None] * state.R[t], 0.0)
        hslot = bt_j[t]

        # w_t − Σ_s η_s R(t,s) g_s = z_flat · coef_z + g_flat · coef_g (flat index s p + r)
        coef_z = Lrow.T.astype(dtype)  # (T1 p, p): [s p + r, q] = L(t, s)[q, r]
        coef_g = -jnp.transpose(etaR, (0, 2, 1)).reshape(T1 * p, p).astype(dtype)
        m_s, a_s, etaR_s = m_t.astype(dtype), a_t.astype(dtype), etaR.astype(dtype)

        def chunk_fn(carry, ic):
            # The chunk is sliced out of the arrays here rather than scanned over: under the
            # replica vmap, scanning over reshaped (chunk, sample) arrays made XLA transpose
            # whole histories at every step. g (and K) are carried and updated in place.
            acc, ghist, Kall = carry

            def rows(x):
                return None if x is None else jax.lax.dynamic_slice_in_dim(x, ic * chunk,
                                                                           chunk, axis=0)

            yc, xfc, wgt, Kc, uc = (rows(x) for x in (state.y, state.xf, state.w, Kall,
                                                      state.u))

            def weighted(x):  # padding rows zeroed (a no-op without padding)
                return x * wgt.reshape((-1,) + (1,) * (x.ndim - 1)) if st.padded else x

            if nb == 1:  # static slices: no copies
                y, xf = yc[:, 0], xfc[:, 0]
            else:
                y = jax.lax.dynamic_index_in_dim(yc, hslot, axis=1, keepdims=False)
                xf = jax.lax.dynamic_index_in_dim(xfc, hslot, axis=1, keepdims=False)
            hst = xf[:, 1 : k + 1]  # xf = [1, h*_b, ξ_b]: (B, k + 2)
            h = live.field(state.z, ghist, coef_z, coef_g, ic * chunk, t)
            h = h + sum_last(hst[:, None, :] * m_s[None])
            a_b = jnp.broadcast_to(a_s, h.shape)
            g = grad_one(h, y, a_b)
            f = network_output(h, a_b, act)
            lo = loss(y, f, loss_kind)  # over every sample of the dataset, selected or not
            dl = loss_grad_f(h, y, a_b, act, loss_kind)
            scale = None
            if st.selection != "none":  # g̃ = (s_t/b) g: the mini-batch's effective gradient
                scale = selection_scale(st, uc, problem.batch_fraction, t).astype(dtype)
                g = g * scale[:, None]
                dl = dl * scale
            gw = weighted(g)
            new = {
                "g": jnp.sum(gw, axis=0),
                "gx": _mm(gw.T, xf),
                "l": jnp.sum(weighted(lo)),
                # Σ ∂ℓ/∂f σ(h): the second layer's gradient (used when η_a > 0)
                "fa": _mm(weighted(dl), act.fn(h)),
            }
            resp, Krow = response.chunk_sums(h, y, a_b, etaR_s, Kc, t, weighted, hess_one,
                                             scale)
            new.update(resp)
            zt = jax.lax.dynamic_slice(state.z, (ic * chunk, t * p), (chunk, p))
            new.update(regression.extra_sums(xf, zt, weighted))
            # write g_t, then read the new history for Σ g_t g_sᵀ (s <= t; slots > t are 0).
            # Reading the old history after computing g_t (which the write also needs) made
            # XLA copy the whole history twice per step to keep the old values.
            ghist = jax.lax.dynamic_update_slice(ghist, g, (ic * chunk, t * p))
            # Σ g_t z_sᵀ and Σ g_t g_sᵀ over the live slots s <= t: (p, T1 p) each
            # and, for the regression's past rows, Σ z_t g_sᵀ (s < t)
            new.update(live.moments(gw, weighted(zt) if need_zg else None, state.z, ghist,
                                    ic * chunk, t))
            acc = jax.tree.map(lambda a, b: a + b.astype(kd), acc, new)
            if Krow is not None:
                Kall = jax.lax.dynamic_update_slice(
                    Kall, Krow[:, None], (ic * chunk, t) + (0,) * (Kall.ndim - 2))
            return (acc, ghist, Kall), None

        acc0 = {
            "mz": jnp.zeros((p, T1 * p), kd),
            "mg": jnp.zeros((p, T1 * p), kd),
            **({"zg": jnp.zeros((p, T1 * p), kd)} if need_zg else {}),
            "g": jnp.zeros((p,), kd),
            "gx": jnp.zeros((p, k + 2), kd),
            "l": jnp.zeros((), kd),
            "fa": jnp.zeros((p,), kd),
        }
        acc0.update(response.zeros(kd))
        acc0.update(regression.extra_zeros(kd))
        nc = st.npad // chunk
        (acc, ghist, Kall), _ = jax.lax.scan(chunk_fn, (acc0, state.g, state.K), jnp.arange(nc))
        if shard is not None:
            acc = shard.sum(acc)
        state = eqx.tree_at(lambda s: (s.g, s.K), state, (ghist, Kall),
                            is_leaf=lambda x: x is None)
        acc["gz"] = flat_to_blocks(acc["mz"], T1, p)
        acc["gg"] = flat_to_blocks(acc["mg"], T1, p)

        n = float(st.n_real)
        past = (idx <= t)[:, None, None]
        beta, v, beta_h, beta_z, c_full = regression.coefficients(acc, state, t)
        C_row, state = regression.c_row(acc, beta, v, c_full, state, t, alpha)
        # C(t, s) for s <= t: zero across independent batches
        C_row = jnp.where(past & same, C_row, 0.0)
        G_row = response.row(acc, beta_z, L, Linv, t, alpha)
        G_row = jnp.where(past & same, G_row, 0.0)

        C = state.C.at[t].set(C_row)
        C = C.at[:, t].set(jnp.swapaxes(C_row, -1, -2))
        Gam = state.Gamma.at[t].set(G_row)

        # weight side: m_{t+1}, a_{t+1}, R(t+1, ·), R0(t+1), Q⊥(t+1, ·)
        decay = 1.0 - eta[t] * problem.ridge
        more = t + 1 < T1
        tp = jnp.minimum(t + 1, T1 - 1)
        m_next = decay * m_t - eta[t] * alpha * beta_h  # β's h* block = E[g_t h*ᵀ]
        m = state.m.at[tp].set(jnp.where(more, m_next, state.m[tp]))
        a_next = a_t - problem.lr_a[t] * alpha * acc["fa"] / n
        a = state.a.at[tp].set(jnp.where(more, a_next, state.a[tp]))
        R = state.R
        R_next = decay * R[t] - eta[t] * jnp.einsum("uqr,usrx->sqx", G_row, R,
                                                    precision=HIGHEST)
        R_next = R_next + jnp.where((idx == t)[:, None, None], eye, 0.0)
        R = R.at[tp].set(jnp.where(more, R_next, R[tp]))
        R0 = state.R0
        R0_next = decay * R0[t] - eta[t] * jnp.einsum("uqr,urx->qx", G_row, R0,
                                                      precision=HIGHEST)
        R0 = R0.at[tp].set(jnp.where(more, R0_next, R0[tp]))
        # Q⊥(t+1, t1) = R0 Q⊥0 R0ᵀ + Σ_{s,u} A(t+1, s) C(s, u) A(t1, u)ᵀ, A(t1, s) = η_s R(t1, s):
        # X(u) = η_u Σ_s A(t+1, s) C(s, u) first, so that C and R are each read once and no
        # (T1, T1, p, p) product η R is formed.
        Qrow = jnp.einsum("qr,rx,tyx->tqy", R0[tp], problem.qperp0, R0, precision=HIGHEST)
        X = jnp.einsum("sqr,sury->uqy", eta[:, None, None] * R[tp], C, precision=HIGHEST)
        X = eta[:, None, None] * X
        Qrow = Qrow + jnp.einsum("uqy,tuvy->tqv", X, R, precision=HIGHEST)
        Qrow = jnp.where((idx <= tp)[:, None, None], Qrow, 0.0)
        Qp = state.Qp
        # row and column t+1 only (a select over the whole Q⊥ cost three passes over it)
        Qp = Qp.at[tp].set(jnp.where(more, Qrow, Qp[tp]))
        Qp = Qp.at[:, tp].set(jnp.where(more, jnp.swapaxes(Qrow, -1, -2), Qp[:, tp]))

        state = eqx.tree_at(
            lambda s: (s.L, s.Linv, s.C, s.Gamma, s.m, s.a, s.R, s.R0, s.Qp), state,
            (L, Linv, C, Gam, m, a, R, R0, Qp))
        loss_mean = acc["l"] / n
        finite = (
            jnp.all(jnp.isfinite(m_next))
            & jnp.all(jnp.isfinite(Qrow))
            & jnp.all(jnp.isfinite(C_row))
            & jnp.all(jnp.isfinite(G_row))
            & jnp.all(jnp.isfinite(a_next))
            & jnp.isfinite(loss_mean)
            & (jnp.max(jnp.abs(Qrow)) < q_overflow)
        )
        out = {
            "train_loss": loss_mean,
            "min_schur_eig": ev_min,
            "jitter": jitter,
            "min_schur_eig_rel": ev_rel,
            "finite": finite,
        }
        return state, out

    return step


# Counts how often the sweep is traced (= compiled): tests assert that a new number does not.
TRACE_COUNT = [0]


def _sweep_one(st: Structure, problem, keys, meter, shard=None):
    """All replicas of one problem: draw, initialise, run steps 0..T while finite.

    Returns (steps run, final state (leading replica axis), per-step outputs stacked over time).
    A step with a non-finite output is the last one run. ``shard``: this device's part of a
    multi-device sweep (``_sharding.Shard``); ``None`` is the one-device sweep.
    """
    TRACE_COUNT[0] += 1
    act = problem.act
    step_r = jax.vmap(make_step(st, act, problem.loss, shard), in_axes=(None, 0, None))
    draws = draw_replicas(st, keys, shard)
    first_row = 0 if shard is None else shard.first_row
    state = jax.vmap(lambda dr: init_state(st, problem, dr, first_row))(draws)
    shapes = jax.eval_shape(step_r, problem, state, jnp.asarray(0))[1]
    outs0 = jax.tree.map(lambda sd: jnp.zeros((st.T1,) + sd.shape, sd.dtype), shapes)
    T1 = st.T1

    def cond(carry):
        t, ok = carry[0], carry[1]
        return (t < T1) & ok

    def body(carry):
        t, _, state, outs, mstate = carry
        state, o = step_r(problem, state, t)
        outs = jax.tree.map(lambda buf, v: buf.at[t].set(v), outs, o)
        mstate = meter.step(mstate, (t + 1) / T1)
        ok = jnp.all(o["finite"])
        if shard is not None:  # every device runs the same steps (stops when any replica does)
            ok = shard.all(ok)
        return t + 1, ok, state, outs, mstate

    mstate = meter.init()
    t, _, state, outs, mstate = jax.lax.while_loop(
        cond, body, (jnp.asarray(0), jnp.asarray(True), state, outs0, mstate))
    meter.close(mstate)
    # the draws' parts that the host needs back are the order parameters only
    keep = {f: getattr(state, f) for f in ("m", "Qp", "C", "Gamma", "R", "a")}
    return t, keep, outs


@eqx.filter_jit
def run_sweep(st: Structure, problem, keys, meter):
    """One problem (traced numbers), all replicas."""
    with full_precision():
        return _sweep_one(st, problem, keys, meter)


@eqx.filter_jit
def run_grid(st: Structure, problems, keys, meter):
    """A grid of problems (numbers with a leading grid axis), the same keys for every point."""
    with full_precision():
        return jax.vmap(lambda pr: _sweep_one(st, pr, keys, meter))(problems)


def progress_meter(show: bool):
    """diffrax's tqdm meter (ticked from inside the compiled loop) or none."""
    return diffrax.TqdmProgressMeter(refresh_steps=1) if show else diffrax.NoProgressMeter()
