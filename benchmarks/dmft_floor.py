"""How fast could *any* JAX implementation of the forward DMFT sweep be on this machine?

    PYTHONPATH=. python benchmarks/dmft_floor.py                  # T=7, N=1e6, p=2
    PYTHONPATH=. python benchmarks/dmft_floor.py --T 28 --N 100000

Issue #2 asks for 30x the throughput of the numpy baseline at (T, N, p) = (7, 1e6, 2). This
script measures, in one process and on the same machine, three things and prints their ratios:

1. the baseline (``benchmarks/numpy_baseline.py``, float64), run first, before JAX is imported;
2. a lower bound on the float64 solve that no implementation of the sweep can beat:
   * drawing the standard normals the sweep consumes (z_t for t = 0..T, h*, ξ: N((T+1)p + k + 1)
     numbers) with ``jax.random.normal`` from explicit keys, 16 replicas, as ``dmft.solve`` does;
   * reading the histories once per step: at step t the field needs z_0..t and g_0..t-1, so
     even a perfectly fused, cache-blocked step streams the live part of both histories from
     memory once. Measured as the time of one streaming reduction over the two (N, (T+1)p)
     float64 histories, times Σ_t (t+1)/(T+1) = (T+2)/2 (only the live slots).
   Everything else a step does (the activation, the gradient, the moments, the small kernel
   algebra) is left out, so the bound is optimistic;
3. ``dmft.solve`` itself (warm: the second call, compile cached).

It prints baseline / bound (the best ratio this machine allows) next to baseline / solve.
Numbers are the minimum over ``--repeat`` runs (default 3) of each measurement.

Device floor. Everything JAX does here runs on JAX's default device, so on a GPU machine the
floor is the GPU's: the time to stream the live histories once per step *on the device*
(``--dtype float32`` streams float32 histories, as a mixed-precision float32 solve stores
them). The script prints the device and ``achieved / floor`` for both the streaming-only floor
and the floor with the draws; ``--no-baseline`` skips the numpy run (on a GPU machine the
baseline is the host CPU's). ``benchmarks/gpu.py`` prints the same streaming ratio per case.
"""

from __future__ import annotations

import argparse
import functools
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

from dmft_speed import PROBLEM  # noqa: E402  (the same problem as the speed benchmark)


def _best(fn, repeat):
    times = []
    for _ in range(repeat):
        t0 = time.perf_counter()
        fn()
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="lower bound on the DMFT sweep vs the baseline")
    ap.add_argument("--T", type=int, default=7)
    ap.add_argument("--N", type=int, default=1_000_000)
    ap.add_argument("--p", type=int, default=2)
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--repeat", type=int, default=3)
    ap.add_argument("--baseline-repeat", type=int, default=1)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="the solve's dtype (and the histories' dtype of the floor)")
    ap.add_argument("--no-baseline", action="store_true", help="skip the numpy baseline")
    args = ap.parse_args(argv)
    T, N, p, R = args.T, args.N, args.p, args.replicas
    if N % R:
        ap.error(f"--N must be a multiple of --replicas={R}; got {N}")

    from numpy_baseline import numpy_dmft

    def baseline():
        return numpy_dmft(PROBLEM["target"], p=p, activation=PROBLEM["activation"],
                          second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                          lr=PROBLEM["lr"], steps=T, samples=N, seed=0)

    t_base = float("nan") if args.no_baseline else _best(baseline, args.baseline_repeat)

    import jax

    jax.config.update("jax_enable_x64", True)
    import jax.numpy as jnp

    import dmft

    T1, k, n = T + 1, 2, N // R
    keys = jax.random.split(jax.random.key(0), R)

    @jax.jit
    def draw(keys):
        def one(key):
            kz, kh, kx = jax.random.split(key, 3)
            return (jax.random.normal(kz, (n, T1, p), jnp.float64),
                    jax.random.normal(kh, (n, 1, k), jnp.float64),
                    jax.random.normal(kx, (n, 1), jnp.float64))
        return jax.vmap(one)(keys)

    jax.block_until_ready(draw(keys))
    t_rng = _best(lambda: jax.block_until_ready(draw(keys)), args.repeat)

    hdt = jnp.dtype(args.dtype)
    z = jax.random.normal(jax.random.key(1), (R, n, T1 * p), hdt)
    g = jax.random.normal(jax.random.key(2), (R, n, T1 * p), hdt)
    read = jax.jit(lambda z, g: jnp.sum(z, axis=1) + jnp.sum(g, axis=1))
    jax.block_until_ready(read(z, g))
    t_pass = _best(functools.partial(lambda a, b: jax.block_until_ready(read(a, b)), z, g),
                   args.repeat)
    del z, g
    passes = (T1 + 1) / 2  # Σ_t (t+1)/(T+1)
    t_floor = t_rng + passes * t_pass

    pr = dmft.make_problem(PROBLEM["target"], p=p, activation=PROBLEM["activation"],
                           second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                           lr=PROBLEM["lr"], steps=T)
    dmft.solve(pr, N, seed=0, replicas=R, progress=False, dtype=args.dtype)  # compile
    t_solve = _best(lambda: dmft.solve(pr, N, seed=1, replicas=R, progress=False,
                                       dtype=args.dtype), args.repeat)

    gb = 2 * hdt.itemsize * N * T1 * p / 1e9
    t_stream = passes * t_pass
    print(f"(T, N, p) = ({T}, {N:.0e}, {p}), {args.dtype}, {R} replicas, device "
          f"{jax.devices()[0]}, cpu count {os.cpu_count()}")
    print(f"  baseline (numpy)                      {t_base:8.3f} s")
    print(f"  30x target = baseline / 30            {t_base / 30:8.3f} s")
    print(f"  floor: normals ({N * (T1 * p + k + 1):.2e})      {t_rng:8.3f} s")
    print(f"  floor: one pass over z and g ({gb:.2f} GB) {t_pass:8.4f} s "
          f"({gb / t_pass:.1f} GB/s) x {passes:g} live passes")
    print(f"  floor total                           {t_floor:8.3f} s")
    print(f"  dmft.solve (warm)                     {t_solve:8.3f} s")
    print(f"  ratio baseline / floor (best possible) {t_base / t_floor:7.1f}x")
    print(f"  ratio baseline / dmft.solve            {t_base / t_solve:7.1f}x")
    print(f"  dmft.solve / floor                     {t_solve / t_floor:7.2f}")
    print(f"  device floor: live histories streamed once per step {t_stream:8.4f} s")
    print(f"  achieved / device floor                {t_solve / t_stream:7.2f}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
