"""Every random draw of a simulation: teacher and initial student, data batches, test set and
mini-batch selections, each from its own key.

Keys (``dmft._rng.KEY_SCHEME``, simulation part): per-seed key
``ks = fold_in(stream_key(seed, STREAM_SIM), s)`` for seed index s; W* from ``fold_in(ks, 0)``,
W⊥_0 from ``fold_in(ks, 1)``, the training batch with label b from ``fold_in(fold_in(ks, 2), b)``
(b_0 = 0 for every schedule, so step 0 of all schedules sees the same batch), the test set from
``fold_in(ks, 3)``, the mini-batch selection of step t (sgd) or epoch e (epochs) from
``fold_in(fold_in(ks, 4), t or e)``; inside a batch, input row i comes from
``fold_in(fold_in(., 0), i)`` and the label noise from ``fold_in(., 1)``. Since every row has its
own key, neither the number of seeds run at once nor the split of the rows over devices
(:class:`RowShard`) changes the data.

X is drawn row block by row block into a preallocated array (:func:`normal_rows`): drawing
it in one go costs about 40 bytes of generator temporaries (threefry state, bits) per entry on
CPU, while blocks of ``_ROW_BLOCK_ENTRIES`` entries bound the extra by about 90 MB.

The functions take ``numbers`` (:meth:`dmft.model.Problem.numbers`, the traced pytree); each
normal is drawn in ``draw_dtype`` (default: the working ``dtype``) and cast to ``dtype``, so that
float32 arithmetic can be compared with float64 on the same data.
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp

from .._precision import full_precision, mm
from .._rng import STREAM_SIM, stream_key

# fold_in constants of the per-seed key
_K_WSTAR, _K_W0, _K_DATA, _K_TEST, _K_SELECT = 0, 1, 2, 3, 4
# fold_in constants inside a data batch key
_K_X, _K_NOISE = 0, 1

_ROW_BLOCK_ENTRIES = 2**21  # entries of X drawn per block (bounds the generator's temporaries)


def seed_key(seed: int, s: int):
    """Per-seed key of seed index ``s``: fold_in(stream_key(seed, STREAM_SIM), s)."""
    return jax.random.fold_in(stream_key(seed, STREAM_SIM), s)


def batch_key(key, b):
    """Key of training batch label ``b`` (the label of step t is ``batch_index(schedule)[t]``)."""
    return jax.random.fold_in(jax.random.fold_in(key, _K_DATA), b)


def _normal(key, shape, dtype, draw_dtype):
    """Standard normals drawn in ``draw_dtype`` (default: ``dtype``), returned in ``dtype``."""
    return jax.random.normal(key, shape, draw_dtype or dtype).astype(dtype)


def init_weights(numbers, d: int, key, dtype, draw_dtype=None):
    """Teacher W* (k×d) and initial student W_0 (p×d) from the per-seed key.

    W* has orthonormal-times-√d rows (QR of a Gaussian block); W_0 = m_0 W* + √d L Uᵀ with U (d×p)
    orthonormal columns orthogonal to W* (QR of [W*ᵀ/√d, G]) and L = cholesky(Q⊥_0), so that
    W_0 W*ᵀ/d = m_0 and W⊥_0 W⊥_0ᵀ/d = Q⊥_0 up to rounding.
    """
    p, k = numbers.p, numbers.k
    sqrt_d = math.sqrt(d)
    g_star = _normal(jax.random.fold_in(key, _K_WSTAR), (d, k), dtype, draw_dtype)
    q_star, _ = jnp.linalg.qr(g_star)  # (d, k), orthonormal columns
    wstar = sqrt_d * q_star.T
    g_perp = _normal(jax.random.fold_in(key, _K_W0), (d, p), dtype, draw_dtype)
    basis, _ = jnp.linalg.qr(jnp.concatenate([q_star, g_perp], axis=1))  # (d, k + p)
    u = basis[:, k:]  # (d, p), orthonormal and orthogonal to the span of W*
    chol = jnp.linalg.cholesky(jnp.asarray(numbers.qperp0, dtype))
    m0 = jnp.asarray(numbers.m0, dtype)
    w0 = mm(m0, wstar) + sqrt_d * mm(chol, u.T)
    return wstar, w0


def normal_rows(key, n: int, d: int, dtype, draw_dtype):
    """X (n×d) with row i drawn from ``fold_in(key, i)``, written block by block in place.

    Drawing ``_ROW_BLOCK_ENTRIES // d`` rows at a time into a preallocated X bounds the
    generator's temporaries by a block. Each row has its own key, so X does not depend on the
    block size (the last block is shifted back to end at row n and rewrites some rows with the
    same values). The loop also materialises X, so XLA cannot fuse the generator into the
    matmuls that read X (with a plain draw it does, redrawing X at every step).
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


def draw_data(numbers, wstar, key, n: int, dtype, draw_dtype=None, rows=None):
    """n samples x ~ N(0, I_d) (rows of X) and labels y = g*(W* x/√d) + √Δ ξ from ``key``.

    ``rows`` (a :class:`RowShard`, several devices only): only this device's rows, zero
    beyond n (the caller weights them out)."""
    d = wstar.shape[1]
    if rows is None:
        x = normal_rows(jax.random.fold_in(key, _K_X), n, d, dtype, draw_dtype)
    else:
        x = rows.normal_rows(jax.random.fold_in(key, _K_X), n, d, dtype, draw_dtype)
    hstar = mm(x, wstar.T) / math.sqrt(d)  # (n, k)
    xi = _normal(jax.random.fold_in(key, _K_NOISE), (n,), dtype, draw_dtype)
    if rows is not None:
        xi = rows.local(xi, n)
    noise_sd = jnp.sqrt(jnp.asarray(numbers.noise, dtype))
    y = numbers.target(hstar).astype(dtype) + noise_sd * xi
    return x, y


def draw_test_set(numbers, wstar, key, n_test: int, dtype, draw_dtype=None, rows=None):
    """The ``n_test`` labelled samples of ``test_error="sample"``, from the per-seed key."""
    return draw_data(numbers, wstar, jax.random.fold_in(key, _K_TEST), n_test, dtype, draw_dtype,
                     rows)


class RowShard:
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
        """This device's rows of :func:`normal_rows` (row i from ``fold_in(key, i)``)."""
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


def minibatch_scale(numbers, key, t, n: int, dtype):
    """s_ν,t / b for the n samples at step t (``sgd:b``, ``epochs:B``), from the per-seed key.

    ``sgd:b``: s_ν,t = [u_ν,t < b], u uniform from ``fold_in(fold_in(key, 4), t)``.
    ``epochs:B``: epoch e = ⌊t/B⌋ draws a random permutation of the n samples from
    ``fold_in(fold_in(key, 4), e)``; position i of the permutation goes to mini-batch
    ⌊i B / n⌋, so the B mini-batches are disjoint, cover the dataset and differ in size by at
    most one; step t uses mini-batch t mod B. b = 1/B (docs/THEORY.md §5).

    b is ``numbers.batch_fraction``, traced, so a new b does not recompile. At b = 1 the
    uniforms (in [0, 1)) are all below b, so every sample is selected with weight 1. Since
    s is 0 or 1, s / b is 0 or the correctly rounded 1 / b whether b is traced or a constant.
    """
    b = numbers.batch_fraction
    ks = jax.random.fold_in(key, _K_SELECT)
    if numbers.selection == "sgd":
        s = jax.random.uniform(jax.random.fold_in(ks, t), (n,)) < b
    else:
        B = numbers.epoch_length
        perm = jax.random.permutation(jax.random.fold_in(ks, t // B), n)
        slot_of_position = (jnp.arange(n) * B) // n
        slot = jnp.zeros((n,), slot_of_position.dtype).at[perm].set(slot_of_position)
        s = slot == t % B
    return s.astype(dtype) / jnp.asarray(b, dtype)


@eqx.filter_jit
def init_seed(numbers, d: int, key, n: int, dtype="float64"):
    """W*, W_0 and the step-0 training batch (X, y) of one seed, from its per-seed key.

    ``key = seed_key(seed, s)`` and ``n = round(alpha·d)`` reproduce exactly what
    :func:`dmft.simulate` draws for seed index ``s`` (used by the tests to check one GD step
    by hand).
    """
    with full_precision():
        wstar, w0 = init_weights(numbers, d, key, dtype)
        x, y = draw_data(numbers, wstar, batch_key(key, 0), n, dtype)
    return wstar, w0, x, y
