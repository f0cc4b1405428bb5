"""Which devices a run uses, on one host or several (``jax.distributed``), and their memory.

Shared by the solver (``dmft/solver/_sharding.py``) and the simulator. Nothing here launches
processes: a multi-host run is the same script started once per host (e.g. by ``srun``) after
``jax.distributed.initialize()``; ``jax.devices()`` then lists every process's devices and the
compiled SPMD program runs on all of them.
"""

from __future__ import annotations

import contextlib
import os

import jax
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from ._errors import DMFTInputError


def resolve_devices(devices) -> list:
    """``devices`` → a list of JAX devices.

    ``None``: every device of the default backend (``jax.devices()``: this host's, or every
    process's under ``jax.distributed``); an int n: the first n of them; a list of devices.
    """
    every = jax.devices()
    if devices is None:
        return list(every)
    if isinstance(devices, (int, np.integer)) and not isinstance(devices, bool):
        n = int(devices)
        if not 1 <= n <= len(every):
            raise DMFTInputError(
                f"`devices` must be an integer in [1, {len(every)}] (the devices of the "
                f"{every[0].platform} backend) or a list of devices; got devices={devices!r}")
        return list(every[:n])
    try:
        devs = list(devices)
    except TypeError:
        devs = None
    if not devs or not all(isinstance(d, jax.Device) for d in devs):
        raise DMFTInputError(
            "`devices` must be None (all devices), an integer count or a non-empty list of "
            f"jax devices; got devices={devices!r}")
    if len(set(devs)) != len(devs):
        raise DMFTInputError(f"`devices` lists a device twice; got devices={devs!r}")
    if process_count_of(devs) != jax.process_count():
        raise DMFTInputError(
            f"`devices` must include devices of every one of the {jax.process_count()} processes "
            "(each process runs the same program on its own devices)")
    return devs


def process_count_of(devs) -> int:
    return len({d.process_index for d in devs})


def device_free_memory(devs) -> tuple[int | None, str, bool]:
    """(free bytes per device, where, shared): the smallest free memory of this process's
    devices in ``devs``; ``shared`` is True when they are CPU devices, which share the host's
    memory (then the host must hold all of this process's devices' arrays)."""
    local = [d for d in devs if d.process_index == jax.process_index()]
    if local[0].platform == "cpu":
        avail, where = free_memory_bytes()
        return avail, where, True
    frees = []
    for d in local:
        try:
            st = d.memory_stats() or {}
            frees.append(int(st["bytes_limit"] - st.get("bytes_in_use", 0)))
        except (KeyError, TypeError, AttributeError, NotImplementedError):
            return None, str(d), False
    i = int(np.argmin(frees))
    return frees[i], str(local[i]), False


def global_array(x, mesh, spec):
    """A host array (the same on every process) as a global array with ``spec`` on ``mesh``."""
    x = np.asarray(x)
    return jax.make_array_from_callback(x.shape, NamedSharding(mesh, spec), lambda i: x[i])


def replicated(tree, mesh):
    """Every array leaf of ``tree`` replicated on ``mesh`` (global arrays, multi-host safe)."""
    return jax.tree.map(lambda x: global_array(x, mesh, P()), tree)


def to_host(tree):
    """Global arrays → numpy on every process (an all-gather across processes when needed)."""
    if jax.process_count() > 1:
        return multihost_utils.process_allgather(tree, tiled=True)
    return jax.device_get(tree)


def run_info(devs) -> dict:
    """What a run records in its settings: devices and processes used."""
    return {"devices": len(devs), "processes": process_count_of(devs)}


def gpu_rng_kernel():
    """Context manager for *calling* a compiled entry point (it must be active when the program
    is lowered, not only traced): on a GPU, JAX lowers the threefry hash behind ``jax.random``
    to its hand-written CUDA kernel instead of the unrolled XLA expression that XLA compiles
    (and autotunes) anew at every call site. The bits are the same (same algorithm, same
    counters; ``jax_threefry_gpu_kernel_lowering``); only the GPU compile gets shorter. On the
    CPU it changes nothing. The flag is part of JAX's compile-cache key. If a future JAX drops
    the flag, this is a no-op; ``DMFT_GPU_RNG_KERNEL=0`` turns it off (to measure the compile
    without it, ``benchmarks/gpu.py``)."""
    if os.environ.get("DMFT_GPU_RNG_KERNEL", "").strip() == "0":
        return contextlib.nullcontext()
    try:
        from jax._src import config as jax_config

        state = jax_config.threefry_gpu_kernel_lowering
    except (ImportError, AttributeError):
        return contextlib.nullcontext()
    return state(True)


def free_memory_bytes() -> tuple[int | None, str]:
    """Free memory on JAX's default device (None where it cannot be read) and its name."""
    import jax

    dev = jax.devices()[0]
    if dev.platform != "cpu":
        try:
            st = dev.memory_stats() or {}
            return int(st["bytes_limit"] - st.get("bytes_in_use", 0)), str(dev)
        except (KeyError, TypeError, AttributeError, NotImplementedError):
            return None, str(dev)
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    return int(line.split()[1]) * 1024, "cpu (MemAvailable)"
    except OSError:
        pass
    return None, "cpu"

