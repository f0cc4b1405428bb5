"""A phase-diagram workload: one ``dmft.sweep`` against separate ``dmft.solve`` calls.

Prints, in one run on this machine (tanh_he3, relu, p = 2, α = 3, T = 6, N = 10⁵, 16 replicas):

1. a ``--points``-point η grid (default 32) by ``dmft.sweep`` (one compilation, vmapped);
2. the same points as separate solves that each compile (what a user paid before the
   hyper-parameters were traced: ``jax.clear_caches()`` between calls);
3. the same points as separate warm solves (compiled once, numbers traced);

and the ratios (2)/(1) and (3)/(warm sweep). Then it times two identical ``dmft solve`` CLI calls in
fresh processes sharing a new persistent compilation cache (the second loads the compiled
program from disk) and a third with the cache off, and prints their ratio.

    python benchmarks/sweep_speed.py [--points 32] [--samples 100000] [--quick]
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
import tempfile
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np  # noqa: E402

import dmft  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def _timed(fn):
    t = time.perf_counter()
    out = fn()
    return time.perf_counter() - t, out


def cli_times(samples: int) -> tuple[float, float, float]:
    with tempfile.TemporaryDirectory() as tmp:
        env = dict(os.environ, PYTHONPATH=ROOT, DMFT_COMPILE_CACHE=os.path.join(tmp, "cache"))
        env.pop("DMFT_NO_COMPILE_CACHE", None)
        cmd = [sys.executable, "-m", "dmft.cli", "solve", "--target", "tanh_he3", "--steps",
               "6", "--samples", str(samples), "--no-progress", "--out"]
        times = []
        for i, extra in enumerate(({}, {}, {"DMFT_NO_COMPILE_CACHE": "1"})):
            t = time.perf_counter()
            subprocess.run(cmd + [os.path.join(tmp, f"r{i}.h5")], env={**env, **extra},
                           check=True, capture_output=True)
            times.append(time.perf_counter() - t)
    return tuple(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__,
                                 formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--points", type=int, default=32)
    ap.add_argument("--samples", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true", help="4 points, 8000 samples")
    args = ap.parse_args(argv)
    if args.quick:
        args.points, args.samples = 4, 8000
    pr = dmft.make_problem("tanh_he3", p=2, alpha=3.0, lr=0.2, steps=6)
    lrs = np.geomspace(0.05, 2.0, args.points)
    kw = dict(samples=args.samples, replicas=16, seed=0, progress=False)

    import warnings

    warnings.simplefilter("ignore", RuntimeWarning)
    jax.clear_caches()
    t_sweep, res = _timed(lambda: dmft.sweep(pr, {"lr": lrs}, **kw))
    t_sweep_warm, _ = _timed(lambda: dmft.sweep(pr, {"lr": lrs * 1.01}, **kw))

    def solve_all(clear):
        out = []
        for lr in lrs:
            if clear:
                jax.clear_caches()
            try:
                out.append(dmft.solve(dmft.make_problem("tanh_he3", p=2, alpha=3.0, lr=lr,
                                                        steps=6), **kw))
            except dmft.DivergenceError as exc:
                out.append(exc.partial)
        return out

    t_cold, cold = _timed(lambda: solve_all(True))
    t_warm, _ = _timed(lambda: solve_all(False))
    ok = [i for i, tr in enumerate(cold) if tr.status == "ok"]
    diff = max(float(np.max(np.abs(res.m.value[i] - cold[i].m.value))) for i in ok)
    print(f"{args.points}-point eta grid, tanh_he3, T=6, N={args.samples}, p=2, "
          f"{os.cpu_count()} CPU cores, jax {jax.__version__} ({jax.devices()[0].platform})")
    print(f"  dmft.sweep (cold, one compile)        {t_sweep:8.2f} s")
    print(f"  dmft.sweep (warm, other eta values)   {t_sweep_warm:8.2f} s")
    print(f"  {args.points} solves, each compiling          {t_cold:8.2f} s   "
          f"ratio to sweep {t_cold / t_sweep:6.1f}x")
    print(f"  {args.points} warm solves (numbers traced)    {t_warm:8.2f} s   "
          f"ratio to warm sweep {t_warm / t_sweep_warm:6.1f}x")
    print(f"  max |m_sweep - m_solve| over the points: {diff:.2e}")
    first, second, off = cli_times(args.samples)
    print(f"dmft solve CLI (tanh_he3, T=6, N={args.samples}) in fresh processes:")
    print(f"  first call (compiles, fills the cache) {first:7.2f} s")
    print(f"  second call (disk cache)               {second:7.2f} s   "
          f"ratio {first / second:5.2f}x")
    print(f"  cache off                              {off:7.2f} s")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
