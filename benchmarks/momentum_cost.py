"""What heavy-ball momentum and Nesterov cost in a DMFT solve, against plain GD in the same run.

``python benchmarks/momentum_cost.py [--samples N] [--steps T] [--repeats R]`` solves one
problem (he3, p = 2 ReLU, α = 2, reuse) three ways, plain GD, heavy ball (β = 0.5) and Nesterov
(β = 0.5), each once to compile and then ``--repeats`` times warm, and prints the best warm
time of each and its ratio to plain GD's. Heavy ball adds one p×p axpy per entry of the weight
side; Nesterov also keeps the iterate's row of R and maps the order parameters to the iterates
once after the sweep, so both ratios should be close to 1.
"""

from __future__ import annotations

import argparse
import time

import jax

jax.config.update("jax_enable_x64", True)

import dmft  # noqa: E402


def best_time(problem, samples, repeats):
    dmft.solve(problem, samples=samples, seed=0, progress=False)  # compile
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        dmft.solve(problem, samples=samples, seed=0, progress=False)
        times.append(time.perf_counter() - t0)
    return min(times)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--samples", type=int, default=64_000)
    ap.add_argument("--steps", type=int, default=20)
    ap.add_argument("--repeats", type=int, default=3)
    a = ap.parse_args(argv)
    base = dict(p=2, activation="relu", alpha=2.0, lr=0.5, steps=a.steps)
    runs = {
        "plain GD": dmft.make_problem("he3", **base),
        "heavy ball β=0.5": dmft.make_problem("he3", momentum=0.5, **base),
        "Nesterov β=0.5": dmft.make_problem("he3", momentum=0.5, nesterov=True, **base),
    }
    print(f"he3, p=2 relu, alpha=2, reuse, T={a.steps}, samples={a.samples}, best of "
          f"{a.repeats} warm solves")
    ref = None
    for name, pr in runs.items():
        t = best_time(pr, a.samples, a.repeats)
        ref = t if ref is None else ref
        print(f"  {name:<18} {t:7.3f} s   ratio to plain GD {t / ref:.3f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
