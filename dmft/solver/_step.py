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
from ._factor import SCHUR_FLOOR_REL, SCHUR_FLOOR_REL_MOMENTUM, append_factor_row
from ._regression import make_regression
from ._response import make_response
from ._sample import SamplePass
from ._state import SweepState, draw_replicas, init_state
from ._structure import Structure


class Step:
    """``step(problem, state, t) -> (state, outputs)`` for one replica; ``problem`` traced.

    A step is three parts, each a method: the sample side (:class:`_sample.SamplePass`: the
    pass over the samples, fields, gradients and sums), the kernel row (regression
    coefficients, C(t, ·) and Γ(t, ·): :meth:`kernel_row`) and the weight side (m, a, R, R0
    and Q⊥ at t + 1: :meth:`weight_side`). ``shard`` (``_sharding.Shard``, multi-device only):
    its ``sum`` adds the per-step sums over the devices that hold the replica's samples.
    """

    def __init__(self, st: Structure, act, loss_kind: str = "square", shard=None):
        self.st, self.shard = st, shard
        self.regression = make_regression(st)
        self.response = make_response(st)
        self.samples = SamplePass(st, act, loss_kind, self.response, self.regression)
        # same batch at (t, s)
        self.same_all = jnp.asarray([[bs == bt for bs in st.bt] for bt in st.bt])
        self.idx = jnp.arange(st.T1)

    def __call__(self, problem, state: SweepState, t):
        st, dtype = self.st, self.st.dtype
        p, T1 = st.p, st.T1
        eta = problem.lr  # (T1,), eta[T] = 0 unused
        same = self.same_all[t][:, None, None]  # (T1, 1, 1): times whose batch is this step's
        # fields of samples of different batches are independent: mask Q⊥ to this batch's times
        Qp_t = jnp.where(same, state.Qp[t], 0.0)
        (L, Linv), ev_min, jitter, ev_rel = append_factor_row((state.L, state.Linv), Qp_t, t, p,
                                                              schur_floor(problem))
        Lrow = jax.lax.dynamic_slice_in_dim(L, t * p, p, axis=0)  # (p, T1 p)
        # reaction coefficients η_s R(t, s) over this batch's past steps s < t
        etaR = jnp.where(same, eta[:, None, None] * state.R[t], 0.0)
        # w_t − Σ_s η_s R(t,s) g_s = z_flat · coef_z + g_flat · coef_g (flat index s p + r)
        coef_z = Lrow.T.astype(dtype)  # (T1 p, p): [s p + r, q] = L(t, s)[q, r]
        coef_g = -jnp.transpose(etaR, (0, 2, 1)).reshape(T1 * p, p).astype(dtype)
        sums, ghist, Kall = self.samples(problem, state, t, coef_z, coef_g,
                                         state.m[t].astype(dtype), state.a[t].astype(dtype),
                                         etaR.astype(dtype))
        if self.shard is not None:
            sums = self.shard.sum(sums)
        state = eqx.tree_at(lambda s: (s.g, s.K, s.L, s.Linv), state, (ghist, Kall, L, Linv),
                            is_leaf=lambda x: x is None)
        state, C_row, G_row, beta_h = self.kernel_row(problem, state, sums, t, same)
        state, m_next, a_next, Qrow = self.weight_side(problem, state, t, G_row, beta_h,
                                                       sums.fa)
        loss_mean = sums.l / float(st.n_real)
        finite = (
            jnp.all(jnp.isfinite(m_next))
            & jnp.all(jnp.isfinite(Qrow))
            & jnp.all(jnp.isfinite(C_row))
            & jnp.all(jnp.isfinite(G_row))
            & jnp.all(jnp.isfinite(a_next))
            & jnp.isfinite(loss_mean)
            & (jnp.max(jnp.abs(Qrow)) < overflow_limit(dtype))
        )
        out = {
            "train_loss": loss_mean,
            "min_schur_eig": ev_min,
            "jitter": jitter,
            "min_schur_eig_rel": ev_rel,
            "finite": finite,
        }
        return state, out

    def kernel_row(self, problem, state: SweepState, sums, t, same):
        """(state with C(t, ·), Γ(t, ·) and the regression's past written, C(t, ·), Γ(t, ·),
        β's h* block E[g_t h*ᵀ]). C and Γ are zero across independent batches and for s > t."""
        alpha = problem.alpha
        past = (self.idx <= t)[:, None, None]
        beta, v, beta_h, beta_z, c_full = self.regression.coefficients(sums, state, t)
        C_row, state = self.regression.c_row(sums, beta, v, c_full, state, t, alpha)
        C_row = jnp.where(past & same, C_row, 0.0)
        G_row = self.response.row(sums.response, beta_z, state.L, state.Linv, t, alpha)
        G_row = jnp.where(past & same, G_row, 0.0)
        C = state.C.at[t].set(C_row)
        C = C.at[:, t].set(jnp.swapaxes(C_row, -1, -2))
        Gam = state.Gamma.at[t].set(G_row)
        state = eqx.tree_at(lambda s: (s.C, s.Gamma), state, (C, Gam))
        return state, C_row, G_row, beta_h

    def weight_side(self, problem, state: SweepState, t, G_row, beta_h, fa):
        """(state with m, a, R, R0 and Q⊥ at t + 1 written, m_{t+1}, a_{t+1}, Q⊥(t+1, ·)).

        The gradient step from the evaluation point at t (the iterate, or Nesterov's look-ahead
        point) is :meth:`gd_image`; :meth:`momentum` adds the momentum term. At t = T nothing
        is written (there is no step T + 1)."""
        st, idx = self.st, self.idx
        T1 = st.T1
        eta = problem.lr
        more = t + 1 < T1
        tp = jnp.minimum(t + 1, T1 - 1)
        image = self.gd_image(problem, state, t, G_row, beta_h, fa)
        state, (m_next, a_next, R_next, R0_next) = self.momentum(problem, state, t, image)
        m = state.m.at[tp].set(jnp.where(more, m_next, state.m[tp]))
        a = state.a.at[tp].set(jnp.where(more, a_next, state.a[tp]))
        R = state.R.at[tp].set(jnp.where(more, R_next, state.R[tp]))
        R0 = state.R0.at[tp].set(jnp.where(more, R0_next, state.R0[tp]))
        # Q⊥(t+1, t1) = R0 Q⊥0 R0ᵀ + Σ_{s,u} A(t+1, s) C(s, u) A(t1, u)ᵀ, A(t1, s) = η_s R(t1, s):
        # X(u) = η_u Σ_s A(t+1, s) C(s, u) first, so that C and R are each read once and no
        # (T1, T1, p, p) product η R is formed.
        Qrow = jnp.einsum("qr,rx,tyx->tqy", R0[tp], problem.qperp0, R0, precision=HIGHEST)
        X = jnp.einsum("sqr,sury->uqy", eta[:, None, None] * R[tp], state.C, precision=HIGHEST)
        X = eta[:, None, None] * X
        Qrow = Qrow + jnp.einsum("uqy,tuvy->tqv", X, R, precision=HIGHEST)
        Qrow = jnp.where((idx <= tp)[:, None, None], Qrow, 0.0)
        Qp = state.Qp
        # row and column t+1 only (a select over the whole Q⊥ would cost three passes over it)
        Qp = Qp.at[tp].set(jnp.where(more, Qrow, Qp[tp]))
        Qp = Qp.at[:, tp].set(jnp.where(more, jnp.swapaxes(Qrow, -1, -2), Qp[:, tp]))
        state = eqx.tree_at(lambda s: (s.m, s.a, s.R, s.R0, s.Qp), state, (m, a, R, R0, Qp))
        return state, m_next, a_next, Qrow

    def gd_image(self, problem, state: SweepState, t, G_row, beta_h, fa):
        """The plain gradient step from the evaluation point at t: (m, a, R(·, ·) row, R0) of
        x_t − η_t (λ x_t + ∇L(x_t)), with R(t+1, s) the response to the gradient at s."""
        st, idx = self.st, self.idx
        eta, alpha = problem.lr, problem.alpha
        decay = 1.0 - eta[t] * problem.ridge
        m_gd = decay * state.m[t] - eta[t] * alpha * beta_h  # β's h* block = E[g_t h*ᵀ]
        a_gd = state.a[t] - problem.lr_a[t] * alpha * fa / float(st.n_real)
        R = state.R
        R_gd = decay * R[t] - eta[t] * jnp.einsum("uqr,usrx->sqx", G_row, R, precision=HIGHEST)
        R_gd = R_gd + jnp.where((idx == t)[:, None, None], jnp.eye(st.p, dtype=st.kdtype), 0.0)
        R0_gd = decay * state.R0[t] - eta[t] * jnp.einsum("uqr,urx->qx", G_row, state.R0,
                                                         precision=HIGHEST)
        return m_gd, a_gd, R_gd, R0_gd

    def momentum(self, problem, state: SweepState, t, image):
        """(state, the evaluation point at t + 1) from the gradient step's ``image``.

        Heavy ball: x_{t+1} = image + β_t (x_t − x_{t−1}) (the evaluation point is the
        iterate; x_{−1} = x_0, so β_0 has no effect). Nesterov: the iterate is
        w_{t+1} = image and the evaluation point y_{t+1} = w_{t+1} + β_{t+1} (w_{t+1} − w_t),
        with w_t kept in the state (``nesterov_w``). The same rule moves m, a, R(·, s) and R0:
        each is linear in the trajectory."""
        if not problem.nesterov:
            tm = jnp.maximum(t - 1, 0)
            b, ba = problem.momentum[t], problem.momentum_a[t]
            m_gd, a_gd, R_gd, R0_gd = image
            nxt = (m_gd + b * (state.m[t] - state.m[tm]),
                   a_gd + ba * (state.a[t] - state.a[tm]),
                   R_gd + b * (state.R[t] - state.R[tm]),
                   R0_gd + b * (state.R0[t] - state.R0[tm]))
            return state, nxt
        t1 = jnp.minimum(t + 1, self.st.T1 - 1)
        b, ba = problem.momentum[t1], problem.momentum_a[t1]
        coef = (b, ba, b, b)
        nxt = tuple(x + c * (x - w) for x, c, w in zip(image, coef, state.nesterov_w,
                                                        strict=True))
        more = t + 1 < self.st.T1
        w_new = tuple(jnp.where(more, x, w) for x, w in zip(image, state.nesterov_w,
                                                           strict=True))
        return eqx.tree_at(lambda s: s.nesterov_w, state, w_new), nxt


def schur_floor(problem):
    """The relative floor of the factor's Schur complements (traced: from the numbers).

    Plain GD uses ``SCHUR_FLOOR_REL``. With momentum the floor is ``SCHUR_FLOOR_REL_MOMENTUM``:
    when the new randomness per step falls below the floor (Krylov degeneracy, as in the
    linear model), the clipped eigenvalues make the formula's Q⊥ and the fields' covariance
    differ at the floor's level, and the two-step recursion of the momentum amplifies that
    difference from one step to the next at the lower floor (docs/THEORY.md §10.4).
    """
    # β_0 has no effect (velocity 0 at t = 0), as in Problem.uses_momentum
    moving = jnp.any(problem.momentum[1:] > 0) | jnp.any(problem.momentum_a[1:] > 0)
    if problem.nesterov:
        moving = jnp.asarray(True)
    return jnp.where(moving, SCHUR_FLOOR_REL_MOMENTUM, SCHUR_FLOOR_REL)


def make_step(st: Structure, act, loss_kind: str = "square", shard=None) -> Step:
    """The step of one replica (see :class:`Step`)."""
    return Step(st, act, loss_kind, shard)


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
    if problem.nesterov:
        keep = iterate_view(problem, keep)
    return t, keep, outs


def iterate_matrix(beta, T1: int):
    """c with w_t = Σ_j c[t, j] y_j: the inverse of the bidiagonal map y_t = (1 + β_t) w_t −
    β_t w_{t−1} (t ≥ 1), y_0 = w_0, from the look-ahead points to the iterates (Nesterov)."""
    b = beta[:T1].at[0].set(0.0)
    B = jnp.diag(1.0 + b) - jnp.diag(b[1:], k=-1)
    return jax.scipy.linalg.solve_triangular(B, jnp.eye(T1, dtype=B.dtype), lower=True)


def iterate_view(problem, keep):
    """Nesterov: the order parameters of the iterates w_t from those of the look-ahead points
    y_t where the sweep evaluates gradients (m, Q⊥, R and a are linear in the trajectory; the
    sample-side kernels C, Γ stay those of the evaluation points). Leading replica axis."""
    T1 = keep["m"].shape[1]
    c = iterate_matrix(problem.momentum, T1).astype(keep["m"].dtype)
    ca = iterate_matrix(problem.momentum_a, T1).astype(keep["m"].dtype)
    out = dict(keep)
    out["m"] = jnp.einsum("tj,rjqk->rtqk", c, keep["m"], precision=HIGHEST)
    out["a"] = jnp.einsum("tj,rjq->rtq", ca, keep["a"], precision=HIGHEST)
    out["R"] = jnp.einsum("tj,rjsqv->rtsqv", c, keep["R"], precision=HIGHEST)
    out["Qp"] = jnp.einsum("tj,rjuqv,su->rtsqv", c, keep["Qp"], c, precision=HIGHEST)
    return out


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
