"""The solver on several devices (and hosts): replicas, and a replica's samples, over a mesh.

Layout. With D devices and R replicas, the devices form a 2-D mesh ("replica", "sample") of
shape (gcd(R, D), D / gcd(R, D)): replicas are spread over the first axis (they are independent:
no communication), and when D does not divide into the replicas (e.g. more devices than
replicas) the samples of each replica are split in equal row blocks over the second axis. Every
device then holds R / D_r replicas × ⌈N_r / D_s⌉ rows of the histories: the per-device resident
state falls as 1/D (:func:`local_structure`; ``memory_estimate(..., devices=)``).

XLA's ``memory_analysis`` (``benchmarks/scaling.py``) shows: when a device holds a single
replica, XLA's temporaries add ~0.6x the resident state (the same happens on one device with a
one-replica vmap), so >= 2 replicas per device keep the per-device memory closest to the
estimate.

Why ``shard_map`` (explicit per-device program) rather than sharded arrays under ``jit``: the
per-device program is *exactly* the one-device sweep (`_step._sweep_one`) on the device's
replicas and rows, so its memory is what ``memory_estimate`` counts and nothing depends on how
XLA's sharding propagation treats a ``while_loop`` carrying in-place updated histories (a
wrong guess there means an all-gather of the histories at every step). Communication is
explicit and small: per step, the moment sums of a replica (O(T p² + D_reg²) numbers, the
``acc`` dict of the step) are ``psum``-ed over its sample shards, and one boolean ("every
output finite") is reduced over all devices so that every device runs the same steps.

Random numbers do not depend on the layout: each replica still draws from
``fold_in(root, r)`` and its rows in blocks of ``DRAW_BLOCK`` from ``fold_in(stream, block)``
(``KEY_SCHEME`` v3); a sample shard draws the blocks that overlap its rows and keeps those
rows. This uses that a block drawn with more rows starts with the same numbers
(``jax_threefry_partitionable``, JAX's default; checked before a sample-sharded solve). So 1, 2
or 4 devices give the same trajectories up to the order of float sums (~1e-13 in float64).
"""

from __future__ import annotations

import dataclasses
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._devices import global_array, replicated
from .._errors import DMFTInputError
from .._precision import full_precision
from ._state import DRAW_BLOCK
from ._step import _sweep_one
from ._structure import Structure

AXES = ("replica", "sample")


def mesh_shape(replicas: int, n_devices: int) -> tuple[int, int]:
    """(devices over replicas, devices over the samples of a replica)."""
    dr = math.gcd(replicas, n_devices)
    return dr, n_devices // dr


def local_structure(st: Structure, chunk_size, n_sample_shards: int) -> Structure:
    """The structure of one device's part of a replica (the whole replica if not sharded).

    The rows of a replica are split in ``n_sample_shards`` equal blocks of ``npad`` rows (a
    multiple of the chunk), padded at the end with zero-weight rows.
    """
    if n_sample_shards == 1:
        return st
    per = -(-st.n_real // n_sample_shards)
    chunk = per if chunk_size is None else min(int(chunk_size), per)
    npad = -(-per // chunk) * chunk
    return dataclasses.replace(st, npad=npad, chunk=chunk, sample_shards=n_sample_shards)


def make_mesh(devs, replicas: int) -> Mesh:
    dr, ds = mesh_shape(replicas, len(devs))
    # samples innermost: a replica's shards are neighbours (same host when possible)
    return Mesh(np.array(devs, dtype=object).reshape(dr, ds), AXES)


class Shard:
    """This device's part of the sweep, seen from inside ``shard_map`` (see ``_step``)."""

    def __init__(self, st: Structure):
        self.st = st
        self.sampled = st.sample_shards > 1
        self.first_row = (jax.lax.axis_index("sample") * st.npad) if self.sampled else 0
        self.rows = self._rows if self.sampled else None

    def sum(self, tree):
        """Sum over the devices holding this replica's samples."""
        return jax.lax.psum(tree, "sample") if self.sampled else tree

    def all(self, ok):
        """True on every device iff ``ok`` is True on every device."""
        return jax.lax.pmin(ok.astype(jnp.int32), AXES) > 0

    def _rows(self, key, tail, sampler=jax.random.normal):
        return draw_rows_shard(key, self.st.n_real, self.st.npad, self.first_row, tail,
                               self.st.dtype, sampler)


def draw_rows_shard(key, n: int, n_loc: int, first_row, tail: tuple, dtype,
                    sampler=jax.random.normal):
    """Rows ``first_row .. first_row + n_loc - 1`` of ``_state._draw_rows(key, n, ...)``.

    Row i of the replica is row i mod B of the block i // B (B = DRAW_BLOCK) drawn from
    ``fold_in(key, i // B)``; rows >= n are zero. Local window w (rows w B ... of this device)
    takes the end of block b0 + w and the start of block b0 + w + 1 (b0 = first_row // B),
    both rolled by the offset first_row mod B; each block is drawn once.
    """
    B = DRAW_BLOCK
    draw = jnp.float64 if jax.config.jax_enable_x64 else dtype
    b0 = first_row // B
    off = first_row - b0 * B
    i = jnp.arange(B)

    def rolled(b):
        blk = sampler(jax.random.fold_in(key, b), (B,) + tail, draw).astype(dtype)
        return jnp.roll(blk, -off, axis=0)

    def window(w, cur, nxt):
        x = jnp.where((i < B - off).reshape((B,) + (1,) * len(tail)), cur, nxt)
        real = first_row + w * B + i < n
        return jnp.where(real.reshape((B,) + (1,) * len(tail)), x, jnp.zeros((), dtype))

    nw = -(-n_loc // B)
    out = jnp.zeros((n_loc,) + tail, dtype)

    def body(w, carry):
        out, cur = carry
        nxt = rolled(b0 + w + 1)
        out = jax.lax.dynamic_update_slice_in_dim(out, window(w, cur, nxt), w * B, 0)
        return out, nxt

    cur = rolled(b0)
    if nw > 1:
        out, cur = jax.lax.fori_loop(0, nw - 1, body, (out, cur))
    last = n_loc - (nw - 1) * B
    win = window(nw - 1, cur, rolled(b0 + nw))
    return jax.lax.dynamic_update_slice_in_dim(out, win[:last], (nw - 1) * B, 0)


def check_draws_prefix() -> None:
    """Sample shards rely on a longer draw starting with a shorter one's numbers."""
    if not jax.config.jax_threefry_partitionable:
        raise DMFTInputError(
            "sharding a replica's samples over devices needs jax_threefry_partitionable=True "
            "(JAX's default) so that results do not depend on the device count; turn it back "
            "on, or use a number of devices that divides `replicas`")


@eqx.filter_jit
def _run(st: Structure, mesh: Mesh, dyn, static, key_data, meter):
    def local(dyn, kd):
        problem = eqx.combine(dyn, static)
        keys = jax.random.wrap_key_data(kd)
        with full_precision():
            return _sweep_one(st, problem, keys, meter, Shard(st))

    f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P("replica")),
                      out_specs=(P(), P("replica"), P(None, "replica")), check_vma=False)
    return f(dyn, key_data)


def run_sweep_sharded(st_local: Structure, devs, problem, keys, meter):
    """The sweep of ``_step.run_sweep`` on the devices ``devs`` (global arrays out)."""
    if st_local.sample_shards > 1:
        check_draws_prefix()
    mesh = make_mesh(devs, keys.shape[0])
    dyn, static = eqx.partition(problem, eqx.is_array)
    kd = global_array(jax.random.key_data(keys), mesh, P("replica"))
    return _run(st_local, mesh, replicated(dyn, mesh), static, kd, meter)


@eqx.filter_jit
def _run_grid(st: Structure, mesh: Mesh, dyn, static, key_data, meter):
    def local(dyn, kd):
        problems = eqx.combine(dyn, static)
        keys = jax.random.wrap_key_data(kd)
        with full_precision():
            return jax.vmap(lambda pr: _sweep_one(st, pr, keys, meter))(problems)

    f = jax.shard_map(local, mesh=mesh, in_specs=(P("grid"), P()), out_specs=P("grid"),
                      check_vma=False)
    return f(dyn, key_data)


def run_grid_sharded(st: Structure, devs, problems, keys, meter):
    """``_step.run_grid`` with the grid points (leading axis of ``problems``, a multiple of the
    device count) spread over ``devs``: each device runs its points' whole sweeps, all
    replicas, the same keys (no communication)."""
    mesh = Mesh(np.array(devs, dtype=object), ("grid",))
    dyn, static = eqx.partition(problems, eqx.is_array)
    dyn = jax.tree.map(lambda x: global_array(x, mesh, P("grid")), dyn)
    kd = global_array(jax.random.key_data(keys), mesh, P())
    return _run_grid(st, mesh, dyn, static, kd, meter)
