"""Seconds per GD step of ``dmft.simulate`` at d = 10⁴ against the matmul floor, and peak memory.

    PYTHONPATH=. python benchmarks/sim_speed.py              # d = 10^4, alpha = 3
    PYTHONPATH=. python benchmarks/sim_speed.py --d 2000     # quick

Problem: tanh_he3 target (k = 2), ReLU student with p = 4, alternating second layer, α = 3,
η = 0.2, reuse schedule, one seed. For each dtype (float64, float32) the simulator's jitted
one-seed-batch function is timed at T = 5 and at T = 21 steps (one warm-up call each, then
``--repeats`` rounds alternating the two, each call ended by ``block_until_ready``; the min per
T is kept). Both calls also draw X (n×d) and the initial condition, which at d = 10⁴ costs more
than several steps and varies with the machine's load, so two numbers are printed:

    time(T=5)/5                             seconds per step including the data draw, and
    (time(T=21) − time(T=5)) / 16           the marginal seconds per GD step.

The floor is one X·Wᵀ (n×d by d×p) and one Gᵀ·X (p×n by n×d) product per step, measured on a
pre-drawn X as the marginal time per step of a bare ``lax.scan`` doing only those two products
(T = 21 vs 5, as above; the faster of a plain and a one-seed ``vmap`` scan, since XLA:CPU picks
different dot kernels for the two); one jitted call of the two products is printed too. The
printed ratio is marginal / floor. The peak resident set size of the process
(``resource.getrusage``, a running maximum) is printed after each dtype's simulator runs, which
come before the floor's (the floor holds its own copies of X).
"""

from __future__ import annotations

import argparse
import functools
import resource
import time

import jax

jax.config.update("jax_enable_x64", True)

import jax.numpy as jnp

from dmft._rng import STREAM_SIM, stream_key
from dmft.model import make_problem
from dmft.simulator._seeds import run_seed_batch


def _time(fn, repeats: int, warm_up: bool = True) -> float:
    """Min over ``max(repeats, 1)`` timed calls, after one untimed warm-up call if asked."""
    if warm_up:
        jax.block_until_ready(fn())
    best = float("inf")
    for _ in range(max(repeats, 1)):
        t0 = time.perf_counter()
        jax.block_until_ready(fn())
        best = min(best, time.perf_counter() - t0)
    return best


def _peak_rss_gb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def _floor(n: int, d: int, p: int, dtype: str, repeats: int) -> tuple[float, float]:
    """(one jitted call of X·Wᵀ and Gᵀ·X, marginal time per step of a scan doing only those two)."""
    x = jax.random.normal(jax.random.key(1), (n, d), dtype)
    w = jax.random.normal(jax.random.key(2), (p, d), dtype)
    g = jax.random.normal(jax.random.key(3), (n, p), dtype)

    @jax.jit
    def two_products(x, w, g):
        return x @ w.T, g.T @ x

    def scan_products(x, w, steps):
        def step(w, _):
            h = x @ w.T  # (n, p)
            return w - 1e-9 * (h.T @ x), None

        return jax.lax.scan(step, w, None, length=steps)[0]

    once = _time(lambda: two_products(x, w, g), repeats)
    per_step = []
    # plain, and vmapped over a batch of one seed as the simulator is (XLA:CPU then picks other
    # dot kernels); the floor is the faster of the two
    for batched in (False, True):
        t = {}
        for s in (5, 21):
            f = functools.partial(scan_products, steps=s)
            f = jax.jit(jax.vmap(f) if batched else f)
            args = (x[None], w[None]) if batched else (x, w)
            t[s] = _time(lambda f=f, args=args: f(*args), repeats)
        per_step.append((t[21] - t[5]) / 16)
    return once, min(per_step)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--d", type=int, default=10_000)
    ap.add_argument("--alpha", type=float, default=3.0)
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--dtypes", default="float64,float32")
    args = ap.parse_args(argv)
    d, p = args.d, args.p
    n = int(round(args.alpha * d))
    root = stream_key(0, STREAM_SIM)
    ids = jnp.arange(1, dtype=jnp.int32)
    print(f"jax {jax.__version__}, backend {jax.default_backend()}, devices {jax.devices()}")
    print(f"d={d} alpha={args.alpha} n={n} p={p} k=2 tanh_he3 relu reuse, 1 seed")
    dtypes = args.dtypes.split(",")
    sim = {}
    for dtype in dtypes:  # simulator first, so that the peak RSS printed is the simulator's
        calls = {}
        for steps in (5, 21):
            pb = make_problem(
                "tanh_he3", p=p, activation="relu", alpha=args.alpha, lr=0.2, steps=steps
            )
            calls[steps] = lambda pb=pb.numbers(): run_seed_batch(pb, root, ids, d, n, dtype,
                                                                  False, 1)
            jax.block_until_ready(calls[steps]())  # warm-up (compiles)
        times = {steps: float("inf") for steps in calls}
        for _ in range(args.repeats):
            for steps, fn in calls.items():
                times[steps] = min(times[steps], _time(fn, 0, warm_up=False))
        sim[dtype] = times
        print(
            f"{dtype}: T=5 {times[5]:.3f} s ({times[5] / 5:.3f} s/step incl. data), "
            f"T=21 {times[21]:.3f} s; marginal {(times[21] - times[5]) / 16:.4f} s/step; "
            f"peak RSS so far {_peak_rss_gb():.2f} GiB",
            flush=True,
        )
    for dtype in dtypes:
        once, floor = _floor(n, d, p, dtype, args.repeats)
        per_step = (sim[dtype][21] - sim[dtype][5]) / 16
        print(
            f"{dtype}: floor X·Wᵀ + Gᵀ·X in a bare scan {floor:.4f} s/step (one jitted call of "
            f"the two products {once:.4f} s); simulator marginal {per_step:.4f} s/step; "
            f"ratio {per_step / floor:.2f}",
            flush=True,
        )
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
