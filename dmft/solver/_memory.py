"""How much memory a solve needs, and the pre-flight that refuses one that cannot fit.

:func:`memory_estimate` counts the arrays the sweep keeps resident exactly (tests compare it
with the state's bytes) and models the transients on top; :func:`check_memory` compares the
need with the free memory before any compute; :func:`fitting_grid_batch` is the largest grid
batch of :func:`dmft.sweep` whose need fits.
"""

from __future__ import annotations

import warnings

import jax
import numpy as np

from .._devices import device_free_memory, free_memory_bytes
from .._errors import DMFTInputError
from .._validate import check_choice
from ..model import Problem
from ._regression import make_regression
from ._response import RESPONSES, make_response
from ._sharding import local_structure, mesh_shape
from ._state import DRAW_BLOCK
from ._structure import make_structure

RUNTIME_BYTES = 300_000_000  # compiled programs and XLA's runtime on the CPU

# Device (GPU) peak model: XLA's GPU buffer assignment keeps one extra copy of both histories
# (z and g) alive during a step (the sample-contracting products read transposed layouts), so
# the peak is the state, that copy and the CPU transients (tests/test_gpu_path.py checks the
# calibration point). The pre-flight adds GPU_MARGIN on top, since running out of device memory
# aborts the run.
GPU_HISTORY_COPIES = 1.0
GPU_MARGIN = 1.10


def memory_estimate(problem: Problem, samples: int, *, replicas: int = 16,
                    chunk_size: int | None = None, response: str = "stein",
                    dtype="float64", grid: int = 1, devices: int = 1,
                    platform: str | None = None, mode: str = "forward") -> dict:
    """Memory a :func:`solve` (or a ``grid``-point batch of :func:`dmft.sweep`) needs, in bytes,
    on each of ``devices`` devices (an int; replicas and samples sharded as :func:`solve` does).

    Returns a dict with
        ``state``: exactly the arrays this solver keeps resident for the whole sweep
            (histories z and g, labels, fixed regressors, padding weights, the response's
            per-sample state, and every replica's kernels and factors); a solve is refused when they
            do not fit in the free memory. In a grid the draws (z, h*, ξ, the regressors'
            Gram) are shared by every point; the rest is per point. A float32 solve keeps its
            per-sample arrays in float32 and its kernels in float64 when x64 is on.
        ``peak``: the expected peak on ``platform`` (default: JAX's default backend).
            On the CPU: ``state`` plus the transients seen on XLA:CPU: one block of draws for
            all replicas (about 1.5 float64 words per normal, with the random bits), one more
            copy of the kernels, and 0.3 GB of runtime (``benchmarks/gpu.py`` compares it with
            the peak RSS).
            On a GPU: the same plus ``GPU_HISTORY_COPIES`` copies of the histories z and g.
        ``device_limit``: what the pre-flight requires free: ``peak`` times ``GPU_MARGIN`` on
            a GPU (where running out of memory aborts the run), ``state`` on the CPU.
        ``devices``: the device count. With several devices all are per device: each holds
            replicas / D_r replicas of ⌈N_r / D_s⌉ (padded) rows (mesh (D_r, D_s), see
            ``dmft/solver/_sharding.py``), so ``state`` falls as 1/devices up to the kernels
            (replicated over a replica's sample shards) and the rounding of rows. The runtime
            term is counted once per device.
        ``checkpoints`` (``mode="reverse"`` only): what reverse mode through
            :func:`dmft.solve_fn` (``jax.grad``, ``dmft.optimize``) keeps on top of the forward
            state. Each step is checkpointed, so the backward pass holds the carried state
            (every array a step writes: the g history and the response's per-sample state,
            the kernels, factors and regression coefficients; not the read-only z, labels and
            regressors) at the input of each of the T + 1 steps, one cotangent of it, and one
            step's recomputed intermediates. ``carried`` (reverse only): the bytes of the
            carried state. ``state`` is unchanged; ``peak`` adds ``checkpoints`` and
            2 × ``carried``; on the CPU ``device_limit`` becomes ``state + checkpoints``.
    """
    check_choice("response", response, set(RESPONSES))
    check_choice("mode", mode, {"forward", "reverse"})
    n_real = samples // replicas
    chunk = n_real if chunk_size is None else min(chunk_size, n_real)
    st = make_structure(problem, n_real, chunk, response, dtype)
    dr, ds = mesh_shape(replicas, devices)
    replicas = replicas // dr
    st = local_structure(st, chunk_size, ds)
    T1, p, npad = st.T1, st.p, st.npad
    item = np.dtype(st.dtype).itemsize
    kitem = np.dtype(st.kdtype).itemsize
    shared_per, per, shared_k, kernels = _words(problem, st)
    state = replicas * (item * npad * (shared_per + grid * per)
                        + kitem * (shared_k + grid * kernels))
    draw_item = 8 if (jax.config.jax_enable_x64 or item == 8) else 4
    block = int(1.5 * draw_item * replicas * min(n_real, DRAW_BLOCK) * T1 * p)
    peak = state + block + kitem * replicas * grid * kernels + RUNTIME_BYTES
    platform = jax.default_backend() if platform is None else platform
    if platform == "cpu":
        limit = state
    else:
        peak += int(GPU_HISTORY_COPIES * item * replicas * npad * T1 * p * (1 + grid))
        limit = int(GPU_MARGIN * peak)
    out = {"state": int(state), "peak": int(peak), "device_limit": int(limit)}
    if mode == "reverse":
        _add_reverse(out, st, replicas, grid, per, kernels, platform)
    return out


def _words(problem, st) -> tuple[int, int, int, int]:
    """Words of the sweep's resident arrays: ``(shared_per, per, shared_k, kernels)``, per sample
    (shared by a grid's points, and per point) and per replica (shared, and per point)."""
    T1, p, k, nb = st.T1, st.p, st.k, st.nb
    # per sample: z and the fixed regressors (shared in a grid); g, labels, padding weights,
    # the response's per-sample state (per grid point)
    shared_per = T1 * p + nb * (k + 2) + (T1 if st.selection != "none" else 0)  # + u
    per = T1 * p + nb + (1 if st.padded else 0) + make_response(st).sample_words()
    # per replica: Q⊥, C, Γ, R; R0; m; a; L and L⁻¹; Nesterov's iterate (m, a, R row, R0);
    # the regression's state (its Gram, shared in a grid, and its past coefficients)
    kernels = 4 * T1 * T1 * p * p + T1 * p * p + T1 * p * k + T1 * p + 2 * (T1 * p) ** 2
    if problem.nesterov:
        kernels += p * k + p + T1 * p * p + p * p
    shared_k, reg_k = make_regression(st).kernel_words()
    return shared_per, per, shared_k, kernels + reg_k


def _add_reverse(out, st, replicas, grid, per, kernels, platform) -> None:
    """Add reverse mode's ``checkpoints`` and ``carried`` to the forward estimate ``out`` and
    raise its ``peak`` and ``device_limit`` (see :func:`memory_estimate`); ``per`` and
    ``kernels`` are the per-point words of :func:`_words`."""
    T1, nb, npad = st.T1, st.nb, st.npad
    item = np.dtype(st.dtype).itemsize
    kitem = np.dtype(st.kdtype).itemsize
    # per replica: the per-sample arrays a step writes (g and the response's state) and
    # every kernel-sized array (the regression's Gram is read-only: its shared words)
    carried = replicas * grid * (item * npad * (per - nb - (1 if st.padded else 0))
                                 + kitem * kernels)
    checkpoints = T1 * carried
    out.update(checkpoints=int(checkpoints), carried=int(carried),
               peak=int(out["peak"] + checkpoints + 2 * carried))
    if platform == "cpu":
        out["device_limit"] = int(out["state"] + checkpoints)
    else:
        out["device_limit"] = int(GPU_MARGIN * out["peak"])


def check_memory(problem, samples, replicas, chunk_size, response, dtype, grid=1,
                 devices=None, mode: str = "forward") -> None:
    """Refuse a solve that cannot fit (on a GPU: its estimated peak with a margin; on the CPU:
    its resident arrays); on the CPU, warn when the estimated peak may not fit.

    With several ``devices`` (a list) the need is per device, compared with each device's free
    memory; CPU devices share the host's memory, which must then hold this process's devices'
    share together."""
    ndev = 1 if devices is None else len(devices)
    need = memory_estimate(problem, samples, replicas=replicas, chunk_size=chunk_size,
                           response=response, dtype=dtype, grid=grid, devices=ndev, mode=mode)
    if ndev == 1:
        avail, where = free_memory_bytes()
    else:
        avail, where, shared = device_free_memory(devices)
        if shared:  # one host memory for all of this process's devices
            nloc = sum(d.process_index == jax.process_index() for d in devices)
            need = {"state": need["state"] * nloc,
                    "peak": (need["peak"] - RUNTIME_BYTES) * nloc + RUNTIME_BYTES,
                    "device_limit": need["device_limit"] * nloc}
    if avail is None:
        return
    what = (f"samples={samples}, steps={problem.steps}, p={problem.p}, response={response!r}, "
            f"dtype={np.dtype(dtype).name}" + (f", grid batch={grid}" if grid > 1 else "")
            + (f", per device of {ndev}" if ndev > 1 else ""))
    # the remedies that apply to this run
    remedies = ("use fewer samples (several solves with other seeds can be pooled), more "
                "devices (`devices=`)"
                + (", dtype='float32'" if np.dtype(dtype).itemsize == 8 else "")
                + (" or response='stein'" if response != "stein" else ""))
    if need["device_limit"] > avail and need["device_limit"] > need["state"]:
        raise DMFTInputError(
            f"`samples` too large for this device: {what} needs an estimated "
            f"{need['peak'] / 1e9:.2f} GB at its peak ({need['device_limit'] / 1e9:.2f} GB with "
            f"a {GPU_MARGIN - 1:.0%} margin), but {avail / 1e9:.2f} GB is free on {where}; "
            + remedies)
    if need["state"] > avail:
        raise DMFTInputError(
            f"`samples` too large for this machine: {what} keeps {need['state'] / 1e9:.2f} GB "
            f"resident (histories N (T+1) p x 2 and kernels), but {avail / 1e9:.2f} GB is free "
            f"on {where}; " + remedies)
    if need["peak"] > avail:
        warnings.warn(
            f"{what} needs an estimated {need['peak'] / 1e9:.2f} GB at its peak, more than the "
            f"{avail / 1e9:.2f} GB free on {where}; it may run out of memory",
            ResourceWarning,
            stacklevel=4,
        )


def fitting_grid_batch(problem, samples, replicas, chunk_size, response, dtype,
                       n_devices: int, n_points: int) -> int:
    """The largest grid batch (halving from ``n_points``) whose estimated need fits in the free
    memory: on the CPU the peak, on a GPU the peak with its margin; each of ``n_devices``
    devices holds batch / n_devices points."""
    avail, _ = free_memory_bytes()
    batch = n_points
    if avail is None:
        return batch

    def need(g):
        est = memory_estimate(problem, samples, replicas=replicas, chunk_size=chunk_size,
                              response=response, dtype=dtype, grid=-(-g // n_devices))
        return max(est["peak"], est["device_limit"])

    while batch > 1 and need(batch) > avail:
        batch = (batch + 1) // 2
    return batch
