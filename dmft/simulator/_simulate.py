"""Direct finite-d simulation of gradient descent on the two-layer network (spec §1).

This is the *arbiter* of the DMFT: it shares only the problem definition with the solver (the
network, the loss and its gradient, the target, the initial condition, the test-error quadrature
and the key streams) and none of the solver's machinery.

For each seed it draws a teacher W* (k×d, orthogonal rows of norm √d), a student W_0 = m_0 W* + W⊥_0
with W⊥_0 orthogonal to the span of W* and W⊥_0 W⊥_0ᵀ/d = Q⊥_0 exactly, and n = round(α d) samples
x ~ N(0, I_d) with labels y = g*(W* x/√d) + √Δ ξ. It then runs

    W_{t+1} = (1 − η_t λ) W_t − η_t Σ_ν g_ν x_νᵀ/√d,   g_ν = ∂ℓ/∂h(h_ν, y_ν),  h_ν = W_t x_ν/√d,

on the SUM loss, and records per step t = 0..T only the observables m_t = W_t W*ᵀ/d,
Q_t = W_t W_tᵀ/d, the train loss (1/n) Σ_ν ℓ on the batch of step t and the test error (W_t itself
is never stored).

Structure: one jitted function runs the T-step ``lax.scan`` for one seed and is ``vmap``-ed over a
batch of seeds; a Python loop (with a tqdm bar) runs the seed batches.

Mini-batches of one dataset (``sgd:b``, ``epochs:B``): the dataset is held like "reuse"; step t
multiplies each sample's gradient by s_ν,t / b (the mini-batch indicator over the expected
fraction, b = 1/B for epochs), see ``_minibatch_scale``: the update is W ← (1 − ηλ) W −
(η/b) Σ_{ν in the mini-batch} g_ν x_νᵀ/√d. The train loss is over the whole dataset.

Schedules: step t uses the batch with label b_t = ``dmft.problem.batch_index(schedule)[t]``
(reuse: 0; fresh: t; repeat:R: t // R; a list: its labels, renumbered in order of first use).
"reuse" keeps its one batch in memory; every other schedule draws the batch of step t from its
label's key inside the scan step (a batch used again is redrawn identically), which costs one
draw of n×d normals per step.

Keys (``dmft.problem.KEY_SCHEME``, simulation part): per-seed key
``ks = fold_in(stream_key(seed, STREAM_SIM), s)`` for seed index s; W* from ``fold_in(ks, 0)``,
W⊥_0 from ``fold_in(ks, 1)``, the training batch with label b from ``fold_in(fold_in(ks, 2), b)``
(b_0 = 0 for every schedule, so step 0 of all schedules sees the same batch), the test set from
``fold_in(ks, 3)``, the mini-batch selection of step t (sgd) or epoch e (epochs) from
``fold_in(fold_in(ks, 4), t or e)``; inside a batch, input row i comes from
``fold_in(fold_in(., 0), i)`` and the label noise from ``fold_in(., 1)``.
Results therefore do not depend on ``seed_batch`` (up to the rounding of batched matmuls, ~1e-15
relative), and the same ``seed`` (with the same ``seed_batch``, which by default depends only
on the sizes and the machine's physical memory) gives bitwise the same result on one machine.

Memory: "reuse" keeps X (n×d) of every seed of a batch in memory for all steps; "fresh" draws
its batch inside the scan step from the key. X is drawn row block by row block into a
preallocated array (row i from its own key), because drawing it in one go costs ~40 bytes of
generator temporaries per entry on CPU (measured, JAX 0.10.2); with blocks the extra is ~90 MB.
The default ``seed_batch`` is the number of seeds whose estimate ``2·itemsize·d·(n +
n_test·[test_error == "sample"]) + 128 MiB`` (twice the data, for a batch copy or a fresh
batch in flight) fits in a quarter of the physical memory (at least 1, at most ``seeds``).
Example: d = 10⁴, α = 3 (n = 3·10⁴), float64: X is 2.4 GB and the estimate 4.9 GB per seed, so
on a 24 GB machine the default is one seed at a time; benchmarks/sim_speed.py measured a peak
resident memory of 2.62 GiB for that run (X is 2.24 GiB).

Precision: ``dtype`` is the working dtype of the data, the weights and the observables (m and Q
come straight from the W W*ᵀ and W Wᵀ matmuls). Every matrix product runs at full precision
(``precision=HIGHEST``, and the jitted functions trace under
``jax.default_matmul_precision("highest")``), whatever the user's global setting: GPUs otherwise
use TF32-class float32 products. ``float64`` needs JAX x64 mode on. The normals are
drawn in the working dtype, so float32 and float64 runs of the same seed see *different* data;
they agree statistically (on the case below, 4 seeds: max |z| = 2.8 in m, 2.3 in Q, 3.0 in the
test error over 10 steps). On the *same* data (drawn in float64, then float32 arithmetic), the
case d = 2000, α = 3, p = 4, k = 2 (tanh_he3, relu, η = 0.2), T = 10, 4 seeds gives
max |float32 − float64| = 9.5e-8 in m, 5.3e-7 in Q, 5.4e-8 in the train loss and 8.4e-8 in the
test error, i.e. 1e-4 of the seed-to-seed standard error or less (≈ 2.6e-3 in m, 3.7e-3 in Q).
Measured with ``_run_seed_batch(..., "float32", ..., draw_dtype="float64")`` against
``simulate(make_problem("tanh_he3", p=4, lr=0.2, steps=10), d=2000, seeds=4)``.

Test error: in both modes it *includes* the label noise Δ/2. ``"exact"`` evaluates
:func:`dmft.observables.test_error` at the simulation's own (m_t, Q_t); this is exactly the
expected loss on a fresh sample given W_t (since W*W*ᵀ/d = I), up to quadrature error.
``"sample"`` is the mean loss on ``n_test`` fresh labelled samples (with label noise) drawn once
per seed and reused at every step.

Devices (``devices=``; see :mod:`dmft._devices`): the seeds of a batch are spread over the
devices (``shard_map`` over a 1-D mesh "seed"; each device runs the one-device program on its
seeds, no communication), under ``jax.distributed`` over every process's devices. One device
runs the one-device code unchanged. When ``seed_batch`` does not divide into the devices
(e.g. ``seed_batch=1`` at large d), the devices form a mesh (gcd(seed_batch, D), D / gcd): the
rows of each seed's data matrices (training batches and test set) are split over the second
axis (row i is still drawn from its own key, so the data do not change), and the products
summed over rows (Gᵀ X, the losses, the second layer's gradient) are ``psum``-ed over it. The
weights W (p × d) are replicated; each device holds ⌈n / row shards⌉ rows of X.

Divergence: after each seed batch the observables are checked; at the first step t where any of
them is non-finite or |Q| > ``_checks.overflow_limit`` (1e100 in float64) in any seed simulated
so far, a partial :class:`Trajectory` of steps 0..t−1 (seeds simulated so far) is built and
:class:`DivergenceError` is raised with it.
"""

from __future__ import annotations

import math
import os
import time

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P
from tqdm.auto import tqdm

from .._devices import (
    device_free_memory,
    free_memory_bytes,
    global_array,
    gpu_rng_kernel,
    replicated,
    resolve_devices,
    run_info,
    to_host,
)
from .._diagnose import step0_causes
from .._errors import DivergenceError, DMFTInputError
from .._precision import overflow_limit
from .._result import Estimate, Trajectory, estimate_from_replicas, mark_blowup
from .._rng import KEY_SCHEME, STREAM_SIM
from .._rng import stream_key as _stream_key
from .._validate import check_choice, check_dtype, check_int, check_x64
from ..model import check_problem
from ..model._activations import get_activation
from ..model._losses import loss, loss_grad_f, loss_grad_h
from ..model._network import network_output
from ..model._problem import Problem
from ..model._schedules import batch_index
from ..observables._table import OBSERVABLES, OPTIONAL
from ..observables._test_error import test_error_map

__all__ = ["simulate"]

# fold_in constants of the per-seed key
_K_WSTAR, _K_W0, _K_DATA, _K_TEST, _K_SELECT = 0, 1, 2, 3, 4
# fold_in constants inside a data batch key
_K_X, _K_NOISE = 0, 1

_ROW_BLOCK_ENTRIES = 2**21  # entries of X drawn per block (bounds the generator's temporaries)
_MEMORY_FRACTION = 0.25  # of physical memory, for the default seed_batch
_MAX_SAMPLES = 1e10  # n = round(alpha·d) above this is refused before any compute
_TEST_ERROR_MODES = ("exact", "sample")
# how often the seed batch was traced (= compiled); tests assert that a new number does not
TRACE_COUNT = [0]

_HIGHEST = jax.lax.Precision.HIGHEST


def _mm(a, b):
    """``a @ b`` at full precision (GPUs default to TF32-class float32 products)."""
    return jnp.matmul(a, b, precision=_HIGHEST)


def _full_precision():
    """Every product traced inside runs at full precision, whatever the user's global
    ``jax_default_matmul_precision`` (library code such as the QR included)."""
    return jax.default_matmul_precision("highest")


# --------------------------------------------------------------------------------------------
# Per-seed building blocks (pure; also used by the tests)
# --------------------------------------------------------------------------------------------


def _seed_key(seed: int, s: int):
    """Per-seed key of seed index ``s``: fold_in(stream_key(seed, STREAM_SIM), s)."""
    return jax.random.fold_in(_stream_key(seed, STREAM_SIM), s)


def _normal(key, shape, dtype, draw_dtype):
    """Standard normals drawn in ``draw_dtype`` (default: ``dtype``), returned in ``dtype``."""
    return jax.random.normal(key, shape, draw_dtype or dtype).astype(dtype)


def _init_weights(problem: Problem, d: int, key, dtype, draw_dtype=None):
    """Teacher W* (k×d) and initial student W_0 (p×d) from the per-seed key.

    W* has orthonormal-times-√d rows (QR of a Gaussian block); W_0 = m_0 W* + √d L Uᵀ with U (d×p)
    orthonormal columns orthogonal to W* (QR of [W*ᵀ/√d, G]) and L = cholesky(Q⊥_0), so that
    W_0 W*ᵀ/d = m_0 and W⊥_0 W⊥_0ᵀ/d = Q⊥_0 up to rounding.
    """
    p, k = problem.p, problem.k
    sqrt_d = math.sqrt(d)
    g_star = _normal(jax.random.fold_in(key, _K_WSTAR), (d, k), dtype, draw_dtype)
    q_star, _ = jnp.linalg.qr(g_star)  # (d, k), orthonormal columns
    wstar = sqrt_d * q_star.T
    g_perp = _normal(jax.random.fold_in(key, _K_W0), (d, p), dtype, draw_dtype)
    basis, _ = jnp.linalg.qr(jnp.concatenate([q_star, g_perp], axis=1))  # (d, k + p)
    u = basis[:, k:]  # (d, p), orthonormal and orthogonal to the span of W*
    chol = jnp.linalg.cholesky(jnp.asarray(problem.qperp0, dtype))
    m0 = jnp.asarray(problem.m0, dtype)
    w0 = _mm(m0, wstar) + sqrt_d * _mm(chol, u.T)
    return wstar, w0


def _normal_rows(key, n: int, d: int, dtype, draw_dtype):
    """X (n×d) with row i drawn from ``fold_in(key, i)``, written block by block in place.

    Drawing all of X at once costs ~40 bytes per entry of temporaries (threefry state, bits) on
    CPU; drawing ``_ROW_BLOCK_ENTRIES // d`` rows at a time into a preallocated X bounds them by a
    block. Each row has its own key, so X does not depend on the block size (the last block is
    shifted back to end at row n and rewrites some rows with the same values). The loop also
    materialises X, so XLA cannot fuse the generator into the matmuls that read X (it did so
    with a plain draw, redrawing X at every step).
    """
    rows = max(1, min(n, _ROW_BLOCK_ENTRIES // d))
    n_blocks = -(-n // rows)

    def draw_row(i):
        return _normal(jax.random.fold_in(key, i), (d,), dtype, draw_dtype)

    def body(b, x):
        start = jnp.minimum(b * rows, n - rows)
        block = jax.vmap(draw_row)(start + jnp.arange(rows))
        return jax.lax.dynamic_update_slice(x, block, (start, 0))

    return jax.lax.fori_loop(0, n_blocks, body, jnp.zeros((n, d), dtype))


def _draw_data(problem: Problem, wstar, key, n: int, dtype, draw_dtype=None, rows=None):
    """n samples x ~ N(0, I_d) (rows of X) and labels y = g*(W* x/√d) + √Δ ξ from ``key``.

    ``rows`` (a :class:`_RowShard`, several devices only): only this device's rows, zero
    beyond n (the caller weights them out)."""
    d = wstar.shape[1]
    if rows is None:
        x = _normal_rows(jax.random.fold_in(key, _K_X), n, d, dtype, draw_dtype)
    else:
        x = rows.normal_rows(jax.random.fold_in(key, _K_X), n, d, dtype, draw_dtype)
    hstar = _mm(x, wstar.T) / math.sqrt(d)  # (n, k)
    xi = _normal(jax.random.fold_in(key, _K_NOISE), (n,), dtype, draw_dtype)
    if rows is not None:
        xi = rows.local(xi, n)
    noise_sd = jnp.sqrt(jnp.asarray(problem.noise, dtype))
    y = problem.target(hstar).astype(dtype) + noise_sd * xi
    return x, y


class _RowShard:
    """This device's rows of every data matrix of a seed (rows split over the mesh axis
    "row", inside ``shard_map``): a matrix of n rows is held as blocks of ⌈n / shards⌉ rows,
    the last padded with zero rows; sums over rows are ``psum``-ed over the axis."""

    def __init__(self, shards: int):
        self.shards = shards
        self.index = jax.lax.axis_index("row")

    def size(self, n: int) -> int:
        return -(-n // self.shards)

    def first(self, n: int):
        return self.index * self.size(n)

    def weights(self, n: int, dtype):
        return (self.first(n) + jnp.arange(self.size(n)) < n).astype(dtype)

    def local(self, v, n: int):
        """This device's entries of a length-n vector (zero padding)."""
        size = self.size(n)
        v = jnp.concatenate([v, jnp.zeros((size * self.shards - n,), v.dtype)])
        return jax.lax.dynamic_slice_in_dim(v, self.first(n), size)

    def normal_rows(self, key, n: int, d: int, dtype, draw_dtype):
        """This device's rows of :func:`_normal_rows` (row i from ``fold_in(key, i)``)."""
        size = self.size(n)
        rows = max(1, min(size, _ROW_BLOCK_ENTRIES // d))
        first = self.first(n)

        def draw_row(i):
            return _normal(jax.random.fold_in(key, i), (d,), dtype, draw_dtype)

        def body(b, x):
            start = jnp.minimum(b * rows, size - rows)
            ids = first + start + jnp.arange(rows)
            block = jax.vmap(draw_row)(ids)
            block = jnp.where((ids < n)[:, None], block, jnp.zeros((), dtype))
            return jax.lax.dynamic_update_slice(x, block, (start, 0))

        return jax.lax.fori_loop(0, -(-size // rows), body, jnp.zeros((size, d), dtype))

    def sum(self, x):
        return jax.lax.psum(x, "row")


def _minibatch_scale(problem: Problem, key, t, n: int, dtype):
    """s_ν,t / b for the n samples at step t (``sgd:b``, ``epochs:B``), from the per-seed key.

    ``sgd:b``: s_ν,t = [u_ν,t < b], u uniform from ``fold_in(fold_in(key, 4), t)``.
    ``epochs:B``: epoch e = ⌊t/B⌋ draws a random permutation of the n samples from
    ``fold_in(fold_in(key, 4), e)``; position i of the permutation goes to mini-batch
    ⌊i B / n⌋, so the B mini-batches are disjoint, cover the dataset and differ in size by at
    most one; step t uses mini-batch t mod B. b = 1/B.
    """
    kind, b = problem.selection, problem.fraction
    ks = jax.random.fold_in(key, _K_SELECT)
    if kind == "sgd":
        if b >= 1.0:
            return jnp.ones((n,), dtype)
        s = jax.random.uniform(jax.random.fold_in(ks, t), (n,)) < b
    else:
        B = problem.epoch_length
        perm = jax.random.permutation(jax.random.fold_in(ks, t // B), n)
        slot_of_position = (jnp.arange(n) * B) // n
        slot = jnp.zeros((n,), slot_of_position.dtype).at[perm].set(slot_of_position)
        s = slot == t % B
    return s.astype(dtype) / jnp.asarray(b, dtype)


def _batch_key(key, b):
    """Key of training batch label ``b`` (the label of step t is ``batch_index(schedule)[t]``)."""
    return jax.random.fold_in(jax.random.fold_in(key, _K_DATA), b)


@eqx.filter_jit
def _init_seed(problem: Problem, d: int, key, dtype="float64", n: int | None = None):
    """W*, W_0 and the step-0 training batch (X, y) of one seed, from its per-seed key.

    Exposed for tests: ``key = _seed_key(seed, s)`` reproduces exactly what :func:`simulate` uses
    for seed index ``s``. ``n`` defaults to round(alpha·d).
    """
    n = int(round(problem.alpha * d)) if n is None else n
    with _full_precision():
        wstar, w0 = _init_weights(problem, d, key, dtype)
        x, y = _draw_data(problem, wstar, _batch_key(key, 0), n, dtype)
    return wstar, w0, x, y


def _run_one_seed(
    problem: Problem, key, d: int, n: int, dtype: str, sample_test: bool, n_test: int, draw_dtype,
    rows=None,
):
    """All observables of one seed over steps 0..T (T = problem.steps); never stores W(t).

    ``draw_dtype`` (None = ``dtype``) is the dtype the normals are drawn in before the cast to
    ``dtype``; only used to measure float32 arithmetic on exactly the float64 data. ``rows``
    (a :class:`_RowShard`): the data's rows are split over devices, their sums added across.
    """
    act = get_activation(problem.activation)
    sqrt_d = math.sqrt(d)
    steps = int(jnp.shape(problem.lr)[0])  # problem.steps would call np.asarray on a tracer
    a0 = jnp.asarray(problem.second_layer, dtype)[None, :]  # (1, p): same rank as h (n, p)
    lr = jnp.asarray(problem.lr, dtype)
    # (problem fields are traced here: read lr_a directly, not through numpy)
    lr_a = jnp.zeros_like(lr) if problem.lr_a is None else jnp.asarray(problem.lr_a, dtype)
    decay = 1.0 - lr * jnp.asarray(problem.ridge, dtype)
    wstar, w0 = _init_weights(problem, d, key, dtype, draw_dtype)
    # batch label of each time t = 0..T (reuse: all 0; fresh: t; repeat:R: t // R; list: b_t)
    labels = jnp.asarray(batch_index(problem.schedule, steps))
    reuse = problem.schedule == "reuse" or problem.selection != "none"  # one dataset in memory
    if reuse:
        x_reuse, y_reuse = _draw_data(problem, wstar, _batch_key(key, 0), n, dtype, draw_dtype,
                                      rows)

    def batch(t):
        if reuse:
            return x_reuse, y_reuse
        # drawn from its label's key at every step: a batch used again is redrawn identically
        return _draw_data(problem, wstar, _batch_key(key, labels[t]), n, dtype, draw_dtype,
                          rows)

    if sample_test:
        x_test, y_test = _draw_data(
            problem, wstar, jax.random.fold_in(key, _K_TEST), n_test, dtype, draw_dtype, rows
        )

    lk = problem.loss
    classify = problem.loss_fn.classification

    def mean_rows(v, count):  # mean over the rows of a data matrix of ``count`` rows
        if rows is None:
            return jnp.mean(v)
        return rows.sum(jnp.sum(v * rows.weights(count, v.dtype))) / count

    def observe(w, a, x, y):
        h = _mm(x, w.T) / sqrt_d  # (n, p)
        # the train loss is over the whole dataset (every sample, selected at this step or not)
        train = mean_rows(loss(y, network_output(h, a, act), lk), n)
        m = _mm(w, wstar.T) / d
        q = _mm(w, w.T) / d
        if sample_test:
            h_test = _mm(x_test, w.T) / sqrt_d
            f_test = network_output(h_test, a, act)
            if classify:  # classification error P(sign f ≠ y)
                test = mean_rows((jnp.sign(f_test) != y_test).astype(dtype), n_test)
            else:
                test = mean_rows(loss(y_test, f_test, lk), n_test)
        else:
            test = jnp.zeros((), dtype)
        return h, (m, q, train, test, a[0])

    def step(carry, inputs):
        w, a = carry
        t, dec, eta, eta_a = inputs
        x, y = batch(t)
        h, obs = observe(w, a, x, y)
        g = loss_grad_h(h, y, a, act, lk)  # (n, p)
        dl = loss_grad_f(h, y, a, act, lk)  # (n,): ∂ℓ/∂f
        if problem.selection != "none":  # mini-batch sum rescaled by 1/b
            scale = _minibatch_scale(problem, key, t, n, dtype)
            if rows is not None:  # this device's samples of the selection
                scale = rows.local(scale, n)
            g = g * scale[:, None]
            dl = dl * scale
        # second layer (trained when lr_a > 0): a ← a − η_a (1/d) Σ_ν ∂ℓ_ν/∂f σ(h_ν)
        if rows is None:
            w_next = dec * w - eta * (_mm(g.T, x) / sqrt_d)
            a_next = a - eta_a * _mm(dl, act.fn(h))[None, :] / d
        else:  # padding rows of x are zero; their ∂ℓ/∂f are weighted out
            gx, ra = rows.sum((_mm(g.T, x), _mm(dl * rows.weights(n, dtype), act.fn(h))))
            w_next = dec * w - eta * (gx / sqrt_d)
            a_next = a - eta_a * ra[None, :] / d
        return (w_next, a_next), obs

    (w_final, a_final), obs = jax.lax.scan(step, (w0, a0), (jnp.arange(steps), decay, lr, lr_a))
    _, obs_final = observe(w_final, a_final, *batch(steps))
    return tuple(
        jnp.concatenate([o, of[None]], axis=0) for o, of in zip(obs, obs_final, strict=True)
    )


def traced_numbers(problem: Problem) -> Problem:
    """The problem with its scalar numbers (α, Δ, λ) and η_a as arrays, so that
    ``eqx.filter_jit`` traces them: a new value does not recompile (α still changes the
    number of samples n = round(α d), a shape, which does)."""
    lr_a = np.asarray(problem.second_layer_lr, dtype=np.float64)
    return eqx.tree_at(
        lambda pr: (pr.alpha, pr.noise, pr.ridge, pr.lr_a), problem,
        (np.asarray(float(problem.alpha)), np.asarray(float(problem.noise)),
         np.asarray(float(problem.ridge)), lr_a),
        is_leaf=lambda x: x is None)


@eqx.filter_jit
def _run_seed_batch(problem, root, seed_ids, d, n, dtype, sample_test, n_test, draw_dtype=None):
    TRACE_COUNT[0] += 1  # runs only when traced (= compiled)
    def one(s):
        key = jax.random.fold_in(root, s)
        return _run_one_seed(problem, key, d, n, dtype, sample_test, n_test, draw_dtype)

    with _full_precision():
        return jax.vmap(one)(seed_ids)


@eqx.filter_jit
def _run_seed_batch_sharded(mesh, dyn, static, root_data, seed_ids, d, n, dtype, sample_test,
                            n_test):
    """:func:`_run_seed_batch` with the seeds spread over the mesh axis "seed" of ``mesh``
    (each device runs its seeds, a vmap) and the rows of their data over the axis "row" (the
    row sums, X's gradient product and the losses, ``psum``-ed over it) (``shard_map``)."""
    row_shards = mesh.shape["row"]

    def local(dyn, rd, ids):
        problem = eqx.combine(dyn, static)
        root = jax.random.wrap_key_data(rd)
        rows = _RowShard(row_shards) if row_shards > 1 else None
        with _full_precision():
            return jax.vmap(lambda s: _run_one_seed(
                problem, jax.random.fold_in(root, s), d, n, dtype, sample_test, n_test, None,
                rows))(ids)

    f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P("seed")), out_specs=P("seed"),
                      check_vma=False)
    return f(dyn, root_data, seed_ids)


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def _physical_memory_bytes() -> int:
    try:
        return int(os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES"))
    except (ValueError, OSError, AttributeError):
        return 16 * 2**30


def _default_seed_batch(
    d: int, n: int, seeds: int, sample_test: bool, n_test: int, itemsize: int
) -> int:
    """Seeds per batch whose estimated peak memory fits in 1/4 of the RAM (module docstring)."""
    per_seed = 2 * itemsize * d * (n + (n_test if sample_test else 0)) + 2**27
    budget = _MEMORY_FRACTION * _physical_memory_bytes()
    return int(max(1, min(seeds, budget // per_seed)))


def _validate(problem, d, seeds, seed, seed_batch, test_error, n_test, dtype):
    check_problem(problem)
    d = check_int("d", d, low=1)
    pk = problem.p + problem.k
    if d < pk:
        raise DMFTInputError(
            f"`d` must be an integer in [p + k, inf) = [{pk}, inf) so that W⊥_0 can be orthogonal "
            f"to W*; got d={d} (p={problem.p}, k={problem.k})"
        )
    seeds = check_int("seeds", seeds, low=1)
    n_float = problem.alpha * d
    if not n_float <= _MAX_SAMPLES:  # also catches alpha·d = inf
        raise DMFTInputError(
            f"`alpha`·`d` must give at most {_MAX_SAMPLES:.0e} samples (n = round(alpha·d)); "
            f"got alpha={problem.alpha:g}, d={d} → n={n_float:.3g}"
        )
    n = int(round(n_float))
    if n < 1:
        raise DMFTInputError(
            f"`alpha`·`d` must give at least 1 sample (n = round(alpha·d) in [1, inf)); "
            f"got alpha={problem.alpha}, d={d} → n={n}"
        )
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    if seed_batch is not None:
        seed_batch = check_int("seed_batch", seed_batch, low=1)
    check_choice("test_error", test_error, set(_TEST_ERROR_MODES))
    n_test = check_int("n_test", n_test, low=1)
    dtype_name = check_dtype(dtype)
    check_x64(dtype_name)
    return d, seeds, n, seed, seed_batch, n_test, dtype_name


def _first_bad_step(per_seed: dict) -> tuple[int, str] | None:
    """The first step (over all seeds) where an observable is non-finite or |Q| overflows."""
    first, what = None, None
    for name in OBSERVABLES:
        x = per_seed[name]
        bad = ~np.isfinite(x)
        if name == "Q":
            bad |= np.abs(x.astype(np.float64)) > overflow_limit(x.dtype)  # NaN compares False
        bad_t = bad.reshape(x.shape[0], x.shape[1], -1).any(axis=(0, 2))  # over steps
        if bad_t.any():
            t = int(np.argmax(bad_t))
            if first is None or t < first:
                first, what = t, name
    return None if first is None else (first, what)


def _trajectory(problem, per_seed, settings, status="ok", first_bad_step=-1) -> Trajectory:
    if not problem.trains_second_layer:
        per_seed = {k: v for k, v in per_seed.items() if k != "a"}
    est = {k: estimate_from_replicas(v, axis=0) for k, v in per_seed.items()}
    n_steps = per_seed["m"].shape[1]
    return Trajectory(
        kind="simulation",
        problem=problem,
        step=np.arange(n_steps),
        m=Estimate(*est["m"]),
        Q=Estimate(*est["Q"]),
        test_error=Estimate(*est["test_error"]),
        train_loss=Estimate(*est["train_loss"]),
        a=Estimate(*est["a"]) if problem.trains_second_layer else None,
        per_seed=per_seed,
        settings=settings,
        status=status,
        first_bad_step=first_bad_step,
        test_loss=Estimate(*est["test_loss"]) if "test_loss" in est else None,
    )


def simulate(
    problem: Problem,
    d: int,
    seeds: int = 16,
    *,
    seed: int = 0,
    seed_batch: int | None = None,
    test_error: str = "exact",
    n_test: int = 10_000,
    dtype="float64",
    progress: bool | None = None,
    devices=None,
) -> Trajectory:
    """Simulate GD on the problem at finite dimension ``d`` over independent seeds.

    Args:
        problem: the :class:`~dmft.problem.Problem` (student, target, α, η_t, λ, schedule, m_0,
            Q⊥_0); it is run for ``problem.steps`` GD steps.
        d: input dimension, an integer >= p + k; n = round(alpha·d) samples (>= 1).
        seeds: number of independent seeds (teacher, initialisation and data), >= 1.
        seed: the root seed (>= 0); the same seed gives bitwise the same result.
        seed_batch: seeds simulated at once (``vmap``); bounds memory only, the result does not
            depend on it. ``None``: as many as fit in 1/4 of the physical memory by the estimate
            2·itemsize·d·(n + n_test if sampled) + 128 MiB per seed (see the module docstring).
        test_error: ``"exact"`` (quadrature at the simulation's (m_t, Q_t)) or ``"sample"`` (mean
            loss on ``n_test`` fresh samples drawn once per seed). Both include label noise Δ/2.
        n_test: test-set size for ``test_error="sample"``, >= 1.
        dtype: working dtype, ``"float64"`` (needs JAX x64) or ``"float32"``.
        progress: tqdm bar over seeds; ``None`` shows it only on a terminal.
        devices: ``None`` (default: every device of the default backend, every process's
            under ``jax.distributed``), an int n (the first n) or a list of devices. The seeds
            of a batch are spread over the devices (a ``seed_batch`` >= the device count is
            rounded up to a multiple of it; a last short batch also computes a few extra
            seeds, dropped); a smaller one splits the rows of each seed's data over devices
            (module docstring). Results do not depend on it (as for ``seed_batch``, ~1e-15).
            One device runs the one-device code unchanged.

    Returns:
        A :class:`~dmft.result.Trajectory` of kind ``"simulation"`` over steps 0..T: mean over
        seeds with standard error std(ddof=1)/√seeds (NaN for one seed), ``per_seed`` arrays
        ``m`` (S, T+1, p, k), ``Q`` (S, T+1, p, p), ``test_error`` and ``train_loss`` (S, T+1),
        and ``settings``. The train loss at step t is (1/n) Σ_ν ℓ on the batch of step t (for
        "fresh" at t = T, the batch step T would use).

    Raises:
        DMFTInputError: invalid input (before any computation).
        DivergenceError: an observable became non-finite or |Q| > 1e100; ``.partial`` holds the
            trajectory of the steps before ``.step`` (seeds simulated so far).

    Warns:
        RuntimeWarning: the run blew up (``dmft._checks.BLOWUP_RATIO``, docs/FORMAT.md); its
            ``status`` is then ``"blew_up"`` and ``first_bad_step`` the first such step.
    """
    d, seeds, n, seed, seed_batch, n_test, dtype = _validate(
        problem, d, seeds, seed, seed_batch, test_error, n_test, dtype
    )
    sample_test = test_error == "sample"
    if seed_batch is None:
        seed_batch = _default_seed_batch(
            d, n, seeds, sample_test, n_test, np.dtype(dtype).itemsize
        )
    seed_batch = min(seed_batch, seeds)
    devs = resolve_devices(devices)
    ndev = len(devs)
    if seed_batch >= ndev:
        seed_batch = -(-seed_batch // ndev) * ndev  # a multiple of the device count
    # mesh (seed groups, row shards): the rows of a seed's data are split when seed_batch
    # does not divide into the devices (e.g. seed_batch=1: X of one seed over all devices)
    seed_groups = math.gcd(seed_batch, ndev)
    row_shards = ndev // seed_groups
    x_bytes = np.dtype(dtype).itemsize * n * d * seed_batch  # the data matrices held at once
    if ndev == 1:
        free, where = free_memory_bytes()
    else:  # per device; CPU devices share the host's memory
        free, where, shared = device_free_memory(devs)
        nloc = sum(dv.process_index == jax.process_index() for dv in devs)
        x_bytes = x_bytes // ndev * (nloc if shared else 1)
    if free is not None and x_bytes > free:
        raise DMFTInputError(
            f"`d`={d} is too large for this machine: with alpha={problem.alpha:g} (n={n}) and "
            f"seed_batch={seed_batch}, the data matrices alone take {x_bytes / 1e9:.1f} GB, "
            f"more than the {free / 1e9:.1f} GB free on {where}; use a smaller d "
            "(or seed_batch=1, or dtype='float32')"
        )
    settings = dict(
        d=d,
        n=n,
        seeds=seeds,
        seed=seed,
        seed_batch=seed_batch,
        test_error=test_error,
        n_test=n_test,
        dtype=dtype,
        key_scheme=KEY_SCHEME,
        **run_info(devs),
    )
    if ndev > 1:
        settings["row_shards"] = row_shards

    start = time.perf_counter()
    numbers = traced_numbers(problem)
    root = _stream_key(seed, STREAM_SIM)
    if ndev > 1:
        mesh = Mesh(np.array(devs, dtype=object).reshape(seed_groups, row_shards),
                    ("seed", "row"))
        dyn, static = eqx.partition(numbers, eqx.is_array)
        dyn = replicated(dyn, mesh)
        root_data = global_array(jax.random.key_data(root), mesh, P())
    chunks: dict[str, list[np.ndarray]] = {
        name: [] for name in (*OBSERVABLES, *OPTIONAL)
    }
    if problem.loss_fn.classification and not sample_test:
        chunks["test_loss"] = []
    with tqdm(total=seeds, unit="seed", disable=None if progress is None else not progress) as bar:
        for lo in range(0, seeds, seed_batch):
            ids = jnp.arange(lo, min(lo + seed_batch, seeds), dtype=jnp.int32)
            if ndev == 1:
                with gpu_rng_kernel():
                    m, q, train, test, a = _run_seed_batch(
                        numbers, root, ids, d, n, dtype, sample_test, n_test
                    )
            else:  # a full batch (a multiple of the devices); the extra seeds are dropped
                ids_all = global_array(np.arange(lo, lo + seed_batch, dtype=np.int32), mesh,
                                       P("seed"))
                with gpu_rng_kernel():
                    out = to_host(_run_seed_batch_sharded(
                        mesh, dyn, static, root_data, ids_all, d, n, dtype, sample_test,
                        n_test))
                m, q, train, test, a = (jnp.asarray(x[: len(ids)]) for x in out)
            if not sample_test:
                s, t1 = m.shape[:2]
                test = test_error_map(
                    numbers, m.reshape((s * t1,) + m.shape[2:]), q.reshape((s * t1,) + q.shape[2:]),
                    a.reshape((s * t1,) + a.shape[2:]),
                ).reshape(s, t1)
            chunks["m"].append(np.asarray(m))
            chunks["Q"].append(np.asarray(q))
            chunks["train_loss"].append(np.asarray(train))
            chunks["test_error"].append(np.asarray(test))
            chunks["a"].append(np.asarray(a))
            if "test_loss" in chunks:
                s, t1 = m.shape[:2]
                chunks["test_loss"].append(test_error_map(
                    numbers, m.reshape((s * t1,) + m.shape[2:]),
                    q.reshape((s * t1,) + q.shape[2:]), a.reshape((s * t1,) + a.shape[2:]),
                    what="loss").reshape(s, t1))
            bar.update(len(ids))
            # earlier batches were clean (else we raised), so only the new one needs checking
            bad = _first_bad_step({k: v[-1] for k, v in chunks.items()})
            if bad is not None:
                t_bad, quantity = bad
                per_seed = {k: np.concatenate(v, axis=0) for k, v in chunks.items()}
                settings["wall_time_s"] = time.perf_counter() - start
                settings["seeds_done"] = per_seed["m"].shape[0]
                partial = _trajectory(
                    problem,
                    {k: v[:, :t_bad] for k, v in per_seed.items()},
                    settings,
                    status="diverged",
                    first_bad_step=t_bad,
                )
                causes = step0_causes(problem) if t_bad == 0 else None
                raise DivergenceError(t_bad, quantity, partial=partial, causes=causes)
    settings["wall_time_s"] = time.perf_counter() - start
    per_seed = {k: np.concatenate(v, axis=0) for k, v in chunks.items()}
    return mark_blowup(_trajectory(problem, per_seed, settings), stacklevel=2)
