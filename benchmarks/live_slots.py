"""Full-width products against the live-slot loop (issue #10, item 4), on this machine.

    PYTHONPATH=. python benchmarks/live_slots.py    # (50, 4e5, 2) and (200, 28000, 8)
    PYTHONPATH=. python benchmarks/live_slots.py --case 100,1e5,4,16 --columns 0,64,256

At step t the field and the moments only need the slots s <= t of the histories; a step that
streams all T + 1 slots reads on average twice what it needs. ``$DMFT_LIVE_COLUMNS`` (see
``dmft/solver/_live.py``) makes the step loop over blocks of that many columns holding a live
slot instead of one product over all of them. This script times one warm ``dmft.solve`` per
(case, columns) in a fresh subprocess (the setting is read when the solve is compiled) and
prints each time against the full-width one measured in the same run (columns = 0), together
with the largest relative difference of m, Q and the test error (rounding only: the blocks
only change the order of the sums).
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

CHILD = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import numpy as np
import dmft
T, N, p, R = (int(float(x)) for x in sys.argv[1:5])
pr = dmft.make_problem("tanh_he3", p=p, activation="relu", alpha=3.0, lr=0.2, steps=T)
t0 = time.perf_counter()
dmft.solve(pr, N, seed=0, replicas=R, progress=False)
cold = time.perf_counter() - t0
warm = []
for _ in range(2):
    t0 = time.perf_counter()
    r = dmft.solve(pr, N, seed=1, replicas=R, progress=False)
    warm.append(time.perf_counter() - t0)
out = {"cold": cold, "warm": min(warm),
       "m": np.asarray(r.m.value).ravel().tolist(), "Q": np.asarray(r.Q.value).ravel().tolist(),
       "err": np.asarray(r.test_error.value).ravel().tolist()}
print("RESULT " + json.dumps(out))
"""


def run(case, columns):
    env = dict(os.environ, DMFT_LIVE_COLUMNS=str(columns), DMFT_NO_COMPILE_CACHE="1",
               PYTHONWARNINGS="ignore")
    root = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, case)], env=env,
                          capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"case {case} columns {columns} failed:\n{proc.stderr[-2000:]}")


def rel(a, b):
    import numpy as np

    a, b = np.asarray(a), np.asarray(b)
    return float(np.max(np.abs(a - b)) / max(np.max(np.abs(a)), 1e-300))


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", action="append",
                    help="T,N,p,replicas (repeatable); default 50,4e5,2,16 and 200,28000,8,4")
    ap.add_argument("--columns", default="0,32,128",
                    help="comma-separated $DMFT_LIVE_COLUMNS values; 0 (full width) is the "
                         "baseline and is always run first")
    args = ap.parse_args(argv)
    cases = [tuple(float(x) for x in c.split(",")) for c in (args.case or
                                                              ["50,4e5,2,16", "200,28000,8,4"])]
    cols = [0] + [int(c) for c in args.columns.split(",") if int(c) != 0]
    print("| (T, N, p), replicas | columns per block | cold s | warm s | warm / full width "
          "| max rel. diff (m, Q, test error) |")
    print("|---|---|---|---|---|---|")
    for case in cases:
        case = tuple(int(x) for x in case)
        base = None
        for c in cols:
            r = run(case, c)
            if base is None:
                base = r
            diff = max(rel(base[k], r[k]) for k in ("m", "Q", "err"))
            label = "all slots" if c == 0 else str(c)
            print(f"| ({case[0]}, {case[1]:.0e}, {case[2]}), {case[3]} | {label} | "
                  f"{r['cold']:.2f} | {r['warm']:.3f} | {r['warm'] / base['warm']:.2f} | "
                  f"{diff:.1e} |", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
