"""Many problems of one structure in one compiled, vmapped sweep: the solver side of
:func:`dmft.sweep`.

The points differ only in their numbers (traced), so every grid batch reuses one compiled
program; all points use the same keys (common random numbers), and each equals :func:`solve`
of that point with the same seed up to float summation order.
"""

from __future__ import annotations

import time
import warnings

import jax
import numpy as np

from .._devices import device_free_memory, gpu_rng_kernel, resolve_devices, run_info, to_host
from .._errors import DivergenceError
from .._validate import check_int
from ._memory import check_memory, fitting_grid_batch
from ._sharding import run_grid_sharded
from ._solve import finish, replica_keys, show_progress, validate
from ._step import progress_meter, run_grid


def solve_points(problem, points, samples, *, seed, replicas, chunk_size, response, dtype,
                 progress, grid_batch, devices=None):
    """(trajectory per point, settings) for ``points``: Problems with the structure of
    ``problem`` (the same steps, p, target, activation, schedule kind) and their own numbers.

    ``grid_batch``: points solved at once (``None``: the largest batch that fits in the free
    memory); with several devices it is rounded up to a multiple of their count and the points
    of a batch are spread over them. A point that diverges gives its partial trajectory."""
    st = validate(problem, samples, seed, replicas, chunk_size, response, dtype)
    devs = resolve_devices(devices)
    ndev, n = len(devs), len(points)
    if grid_batch is None:
        grid_batch = fitting_grid_batch(problem, samples, replicas, chunk_size, response,
                                        st.dtype, ndev, n)
    grid_batch = min(check_int("grid_batch", grid_batch, low=1), n)
    if ndev > 1:  # per device: grid_batch / ndev points (CPU devices share the host's memory)
        grid_batch = -(-grid_batch // ndev) * ndev
        shared = device_free_memory(devs)[2]
        nloc = sum(dv.process_index == jax.process_index() for dv in devs) if shared else 1
        check_memory(problem, samples, replicas, chunk_size, response, st.dtype,
                     grid=grid_batch // ndev * nloc)
    else:
        check_memory(problem, samples, replicas, chunk_size, response, st.dtype,
                     grid=grid_batch)
    keys = replica_keys(seed, replicas)
    numbers = [pr.numbers(st.kdtype) for pr in points]
    meter = progress_meter(show_progress(progress) and jax.process_index() == 0)
    common = dict(samples=samples, replicas=replicas, seed=seed, chunk_size=chunk_size,
                  response=response, dtype=st.dtype_name)
    trajs = []
    for lo in range(0, n, grid_batch):
        batch = numbers[lo:lo + grid_batch]
        real = len(batch)
        batch = batch + [batch[-1]] * (grid_batch - real)  # same shape: no recompile
        stacked = jax.tree.map(lambda *xs: np.stack(xs), *batch)
        t1 = time.perf_counter()
        with gpu_rng_kernel():
            if ndev == 1:
                n_run, state, outs = jax.device_get(run_grid(st, stacked, keys, meter))
            else:
                n_run, state, outs = to_host(run_grid_sharded(st, devs, stacked, keys, meter))
        elapsed = time.perf_counter() - t1
        for i in range(real):
            settings = dict(common, wall_time_s=elapsed / real, **run_info(devs))
            one = jax.tree.map(lambda x, i=i: x[i], (state, outs))
            try:
                with warnings.catch_warnings():
                    warnings.simplefilter("ignore", RuntimeWarning)
                    tr = finish(points[lo + i], one[0], one[1], int(n_run[i]), settings, False)
            except DivergenceError as exc:
                tr = exc.partial
            trajs.append(tr)
    return trajs, dict(common, grid_batch=grid_batch, **run_info(devs))
