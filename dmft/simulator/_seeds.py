"""Batches of seeds: how many run at once, and how they are spread over the devices.

One jitted function runs :func:`~dmft.simulator._train.run_one_seed` ``vmap``-ed over a batch
of seed indices (:func:`run_seed_batch`); the driver loops over the batches.

Memory: "reuse" keeps X (n×d) of every seed of a batch in memory for all steps; "fresh" draws
its batch inside the scan step. The default ``seed_batch`` is the number of seeds whose estimate
``2·itemsize·d·(n + n_test·[test_error == "sample"]) + 128 MiB`` (twice the data, for a batch
copy or a fresh batch in flight) fits in a quarter of the physical memory (at least 1, at most
``seeds``). Example: d = 10⁴, α = 3 (n = 3·10⁴), float64: X is 2.4 GB and the estimate 4.9 GB
per seed, so with 24 GB of memory the default is one seed at a time
(``benchmarks/sim_speed.py`` prints the peak resident memory of such a run).

Devices (``devices=``; see :mod:`dmft._devices`): the seeds of a batch are spread over the
devices (``shard_map`` over a 1-D mesh "seed"; each device runs the one-device program on its
seeds, no communication), under ``jax.distributed`` over every process's devices. One device
runs the one-device code unchanged. When ``seed_batch`` does not divide into the devices
(e.g. ``seed_batch=1`` at large d), the devices form a mesh (gcd(seed_batch, D), D / gcd): the
rows of each seed's data matrices (training batches and test set) are split over the second
axis (row i is still drawn from its own key, so the data do not change), and the products
summed over rows (Gᵀ X, the losses, the second layer's gradient) are ``psum``-ed over it. The
weights W (p × d) are replicated; each device holds ⌈n / row shards⌉ rows of X.
"""

from __future__ import annotations

import math
import os
from typing import NamedTuple

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._devices import (
    device_free_memory,
    free_memory_bytes,
    global_array,
    gpu_rng_kernel,
    replicated,
    resolve_devices,
    to_host,
)
from .._errors import DMFTInputError
from .._precision import full_precision
from .._rng import STREAM_SIM, stream_key
from ._draws import RowShard
from ._train import run_one_seed

_MEMORY_FRACTION = 0.25  # of physical memory, for the default seed_batch
# how often the seed batch was traced (= compiled); tests assert that a new number does not
TRACE_COUNT = [0]


@eqx.filter_jit
def run_seed_batch(numbers, root, seed_ids, d, n, dtype, sample_test, n_test, draw_dtype=None):
    """(m, Q, train loss, test error, a) of the seeds ``seed_ids``, stacked on a leading axis;
    seed s uses the per-seed key ``fold_in(root, s)``."""
    TRACE_COUNT[0] += 1  # runs only when traced (= compiled)

    def one(s):
        key = jax.random.fold_in(root, s)
        return run_one_seed(numbers, key, d, n, dtype, sample_test, n_test, draw_dtype)

    with full_precision():
        return jax.vmap(one)(seed_ids)


@eqx.filter_jit
def run_seed_batch_sharded(mesh, dyn, static, root_data, seed_ids, d, n, dtype, sample_test,
                           n_test):
    """:func:`run_seed_batch` with the seeds spread over the mesh axis "seed" of ``mesh``
    (each device runs its seeds, a vmap) and the rows of their data over the axis "row" (the
    row sums, X's gradient product and the losses, ``psum``-ed over it) (``shard_map``)."""
    row_shards = mesh.shape["row"]

    def local(dyn, rd, ids):
        numbers = eqx.combine(dyn, static)
        root = jax.random.wrap_key_data(rd)
        rows = RowShard(row_shards) if row_shards > 1 else None
        with full_precision():
            return jax.vmap(lambda s: run_one_seed(
                numbers, jax.random.fold_in(root, s), d, n, dtype, sample_test, n_test, None,
                rows))(ids)

    f = jax.shard_map(local, mesh=mesh, in_specs=(P(), P(), P("seed")), out_specs=P("seed"),
                      check_vma=False)
    return f(dyn, root_data, seed_ids)


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


class SeedPlan(NamedTuple):
    """Seeds per batch and the device mesh (seed groups × row shards) they run on."""

    seed_batch: int
    devices: list
    seed_groups: int
    row_shards: int


def plan_seed_batches(alpha, d, n, seeds, seed_batch, sample_test, n_test, dtype,
                      devices) -> SeedPlan:
    """The :class:`SeedPlan` of a run; refuses (``DMFTInputError``) a batch whose data
    matrices alone exceed the free memory (per device when there are several)."""
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
            f"`d`={d} is too large for this machine: with alpha={alpha:g} (n={n}) and "
            f"seed_batch={seed_batch}, the data matrices alone take {x_bytes / 1e9:.1f} GB, "
            f"more than the {free / 1e9:.1f} GB free on {where}; use a smaller d "
            "(or seed_batch=1, or dtype='float32')"
        )
    return SeedPlan(seed_batch, devs, seed_groups, row_shards)


class SeedBatches:
    """Runs the seed batches of one simulation on the devices of its :class:`SeedPlan`."""

    def __init__(self, plan: SeedPlan, numbers, seed, d, n, dtype, sample_test, n_test):
        self.plan = plan
        self.numbers = numbers
        self.args = (d, n, dtype, sample_test, n_test)
        self.root = stream_key(seed, STREAM_SIM)
        if len(plan.devices) > 1:
            self.mesh = Mesh(
                np.array(plan.devices, dtype=object).reshape(plan.seed_groups, plan.row_shards),
                ("seed", "row"))
            dyn, self.static = eqx.partition(numbers, eqx.is_array)
            self.dyn = replicated(dyn, self.mesh)
            self.root_data = global_array(jax.random.key_data(self.root), self.mesh, P())

    def run(self, lo: int, hi: int):
        """(m, Q, train loss, test error, a) of the seeds lo..hi−1, each (hi − lo, T + 1, ...)."""
        if len(self.plan.devices) == 1:
            ids = jnp.arange(lo, hi, dtype=jnp.int32)
            with gpu_rng_kernel():
                return run_seed_batch(self.numbers, self.root, ids, *self.args)
        # a full batch (a multiple of the devices); the extra seeds are dropped
        ids_all = global_array(np.arange(lo, lo + self.plan.seed_batch, dtype=np.int32),
                               self.mesh, P("seed"))
        with gpu_rng_kernel():
            out = to_host(run_seed_batch_sharded(
                self.mesh, self.dyn, self.static, self.root_data, ids_all, *self.args))
        return tuple(jnp.asarray(x[: hi - lo]) for x in out)
