"""One seed's gradient descent on explicit d-dimensional weights, recording only observables.

    W_{t+1} = (1 − η_t λ) W_t − η_t Σ_ν g_ν x_νᵀ/√d,   g_ν = ∂ℓ/∂h(h_ν, y_ν),  h_ν = W_t x_ν/√d,

on the SUM loss, one ``lax.scan`` over t = 0..T−1; with momentum (heavy ball) the step adds
β_t (W_t − W_{t−1}), and Nesterov takes the gradient (and the decay) at the look-ahead point
Y_t = W_t + β_t (W_t − W_{t−1}), W_{t+1} = (1 − η_t λ) Y_t − η_t Σ_ν g_ν(Y_t) x_νᵀ/√d (W_{−1} = W_0;
the second layer alike with ``momentum_a``). Per step t = 0..T it records m_t = W_t W*ᵀ/d,
Q_t = W_t W_tᵀ/d, the train loss (1/n) Σ_ν ℓ over the batch of step t (at the point where the
gradient is taken: Y_t for Nesterov, which is W_T at t = T), the sampled test error
(``test_error="sample"``) and the second layer a_t. W_t itself is never stored.

Batches: step t uses the batch with label ``batch_index(schedule)[t]`` (reuse: 0; fresh: t;
repeat:R: t // R; a list: its labels, renumbered in order of first use; docs/THEORY.md §2).
"reuse" and the mini-batch schedules keep their one dataset in memory; every other schedule
draws the batch of step t from its label's key inside the scan step (a batch used again is
redrawn identically), which costs one draw of n×d normals per step but holds one batch only.

Mini-batches of one dataset (``sgd:b``, ``epochs:B``; docs/THEORY.md §5): step t multiplies
each sample's gradient by s_ν,t / b (:func:`dmft.simulator._draws.minibatch_scale`), so the
update is W ← (1 − ηλ) W − (η/b) Σ_{ν in the mini-batch} g_ν x_νᵀ/√d; the train loss is over the
whole dataset.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp

from .._precision import mm
from ..model import batch_index, loss, loss_grad_f, loss_grad_h, network_output
from ._draws import batch_key, draw_data, draw_test_set, init_weights, minibatch_scale


def run_one_seed(numbers, key, d: int, n: int, dtype: str, sample_test: bool, n_test: int,
                 draw_dtype=None, rows=None):
    """All observables (m, Q, train loss, test error, a) of one seed over steps 0..T.

    ``numbers``: :meth:`dmft.model.Problem.numbers` (traced); ``key``: the per-seed key.
    ``draw_dtype`` (None = ``dtype``) is the dtype the normals are drawn in before the cast to
    ``dtype``; only used to measure float32 arithmetic on exactly the float64 data. ``rows``
    (a :class:`~dmft.simulator._draws.RowShard`): the data's rows are split over devices, their
    sums added across. The test error is 0 here unless ``sample_test`` (the exact one is
    evaluated afterwards from m and Q).
    """
    steps = numbers.steps
    a0 = jnp.asarray(numbers.second_layer, dtype)[None, :]  # (1, p): same rank as h (n, p)
    # lr and lr_a have T + 1 entries (the last, η_T, is never used)
    lr = jnp.asarray(numbers.lr, dtype)[:steps]
    lr_a = jnp.asarray(numbers.lr_a, dtype)[:steps]
    beta = jnp.asarray(numbers.momentum, dtype)[:steps]
    beta_a = jnp.asarray(numbers.momentum_a, dtype)[:steps]
    decay = 1.0 - lr * jnp.asarray(numbers.ridge, dtype)
    wstar, w0 = init_weights(numbers, d, key, dtype, draw_dtype)
    batch = _batches(numbers, wstar, key, n, dtype, draw_dtype, rows)
    test_set = None
    if sample_test:
        test_set = draw_test_set(numbers, wstar, key, n_test, dtype, draw_dtype, rows)
    observe = _observer(numbers, wstar, test_set, d, n, n_test, dtype, rows)
    step = _gd_step(numbers, key, batch, observe, d, n, dtype, rows)
    (w_final, a_final, _, _), obs = jax.lax.scan(
        step, (w0, a0, w0, a0), (jnp.arange(steps), decay, lr, lr_a, beta, beta_a))
    _, obs_final = observe(w_final, a_final, *batch(steps))
    return tuple(
        jnp.concatenate([o, of[None]], axis=0) for o, of in zip(obs, obs_final, strict=True)
    )


def _batches(numbers, wstar, key, n, dtype, draw_dtype, rows):
    """``batch(t)``: the training batch (X, y) of step t (a traced t for the drawn schedules)."""
    # batch label of each time t = 0..T (reuse: all 0; fresh: t; repeat:R: t // R; list: b_t)
    labels = jnp.asarray(batch_index(numbers.schedule, numbers.steps))
    if numbers.schedule == "reuse" or numbers.selection != "none":  # one dataset in memory
        data = draw_data(numbers, wstar, batch_key(key, 0), n, dtype, draw_dtype, rows)
        return lambda t: data

    def batch(t):
        # drawn from its label's key at every step: a batch used again is redrawn identically
        return draw_data(numbers, wstar, batch_key(key, labels[t]), n, dtype, draw_dtype, rows)

    return batch


def _mean_rows(rows, v, count):
    """Mean over the rows of a data matrix of ``count`` rows (summed over devices if split)."""
    if rows is None:
        return jnp.mean(v)
    return rows.sum(jnp.sum(v * rows.weights(count, v.dtype))) / count


def _observer(numbers, wstar, test_set, d, n, n_test, dtype, rows):
    """``observe(w, a, x, y, at=None)`` → (h, (m, Q, train loss, test error, a)) at weights
    (w, a); with ``at = (w', a')`` the fields h and the train loss are at (w', a') instead (the
    point where Nesterov takes the gradient), the overlaps still at (w, a)."""
    act, lk = numbers.act, numbers.loss
    classify = numbers.loss_fn.classification
    sqrt_d = math.sqrt(d)

    def observe(w, a, x, y, at=None):
        wg, ag = (w, a) if at is None else at
        h = mm(x, wg.T) / sqrt_d  # (n, p)
        # the train loss is over the whole dataset (every sample, selected at this step or not)
        train = _mean_rows(rows, loss(y, network_output(h, ag, act), lk), n)
        m = mm(w, wstar.T) / d
        q = mm(w, w.T) / d
        if test_set is not None:
            x_test, y_test = test_set
            h_test = mm(x_test, w.T) / sqrt_d
            f_test = network_output(h_test, a, act)
            if classify:  # classification error P(sign f ≠ y)
                test = _mean_rows(rows, (jnp.sign(f_test) != y_test).astype(dtype), n_test)
            else:
                test = _mean_rows(rows, loss(y_test, f_test, lk), n_test)
        else:
            test = jnp.zeros((), dtype)
        return h, (m, q, train, test, a[0])

    return observe


def _gd_step(numbers, key, batch, observe, d, n, dtype, rows):
    """The scan body: observe at (w, a), then one GD step (with momentum) on the batch of step t.

    The carry is (w_t, a_t, w_{t−1}, a_{t−1})."""
    act, lk = numbers.act, numbers.loss
    sqrt_d = math.sqrt(d)
    nesterov = numbers.nesterov

    def step(carry, inputs):
        w_t, a_t, w_prev, a_prev = carry
        t, dec, eta, eta_a, b, b_a = inputs
        x, y = batch(t)
        if nesterov:  # gradient and decay at the look-ahead point
            w = w_t + b * (w_t - w_prev)
            a = a_t + b_a * (a_t - a_prev)
            h, obs = observe(w_t, a_t, x, y, at=(w, a))
        else:
            w, a = w_t, a_t
            h, obs = observe(w, a, x, y)
        g = loss_grad_h(h, y, a, act, lk)  # (n, p)
        dl = loss_grad_f(h, y, a, act, lk)  # (n,): ∂ℓ/∂f
        if numbers.selection != "none":  # mini-batch sum rescaled by 1/b
            scale = minibatch_scale(numbers, key, t, n, dtype)
            if rows is not None:  # this device's samples of the selection
                scale = rows.local(scale, n)
            g = g * scale[:, None]
            dl = dl * scale
        # second layer (trained when lr_a > 0): a ← a − η_a (1/d) Σ_ν ∂ℓ_ν/∂f σ(h_ν)
        if rows is None:
            w_next = dec * w - eta * (mm(g.T, x) / sqrt_d)
            a_next = a - eta_a * mm(dl, act.fn(h))[None, :] / d
        else:  # padding rows of x are zero; their ∂ℓ/∂f are weighted out
            gx, ra = rows.sum((mm(g.T, x), mm(dl * rows.weights(n, dtype), act.fn(h))))
            w_next = dec * w - eta * (gx / sqrt_d)
            a_next = a - eta_a * ra[None, :] / d
        if not nesterov:  # heavy ball
            w_next = w_next + b * (w_t - w_prev)
            a_next = a_next + b_a * (a_t - a_prev)
        return (w_next, a_next, w_t, a_t), obs

    return step
