"""Where the cold start of ``dmft.solve`` goes: tracing, lowering and XLA compile per part.

    PYTHONPATH=. python benchmarks/compile_time.py                  # (7, 1e6, 2) float64
    PYTHONPATH=. python benchmarks/compile_time.py --case 20,1e5,2 --dtype float32

Each row runs in a fresh subprocess (empty in-memory caches, persistent cache off) and times,
with JAX's ahead-of-time API (``.lower()`` = trace + lower to StableHLO, ``.compile()`` = XLA):

* ``sweep``: the whole compiled solve (``dmft.solver._step.run_sweep``), as ``dmft.solve``
  compiles it, and its first run;
* ``draws``: the random draws of every replica alone (``_state.draw_replicas``);
* ``step``: one DMFT step of every replica alone (``vmap(make_step(...))``);
* ``test error``: the replica test-error map (the Gaussian quadrature of e_g over steps).

The parts overlap with the sweep (it contains the draws and the step), so they do not add up
to it; they show which part XLA spends its time on.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

CHILD = r"""
import json, sys, time
import jax
jax.config.update("jax_enable_x64", True)
import jax.numpy as jnp
import diffrax
import equinox as eqx
import dmft
from dmft.solver import _solve, _step, _state
T, N, p = (int(float(x)) for x in sys.argv[1:4]); dtype = sys.argv[4]; part = sys.argv[5]
R = 16
pr = dmft.make_problem("tanh_he3", p=p, activation="relu", alpha=3.0, lr=0.2, steps=T)
st = _solve.validate(pr, N, 0, R, None, "stein", dtype)
num = pr.numbers(st.kdtype)
keys = _solve.replica_keys(0, R)


def observables_problem(pr, st):
    return pr.numbers(st.kdtype)
if part == "sweep":
    fn, args = _step.run_sweep, (st, num, keys, diffrax.NoProgressMeter())
elif part == "draws":
    fn = eqx.filter_jit(_state.draw_replicas)
    args = (st, keys)
elif part == "step":
    draws = jax.eval_shape(lambda k: _state.draw_replicas(st, k), keys)
    state = jax.eval_shape(lambda d: jax.vmap(lambda dd: _state.init_state(st, num, dd))(d),
                           draws)
    state = jax.tree.map(lambda s: jnp.zeros(s.shape, s.dtype), state)
    step = jax.vmap(_step.make_step(st, num.act, num.loss), in_axes=(None, 0, None))
    fn = eqx.filter_jit(lambda pr, s, t: step(pr, s, t))
    args = (num, state, jnp.asarray(1))
elif part == "test error":
    from dmft import observables
    M = R * st.T1
    m = jnp.zeros((M, p, st.k), st.dtype)
    Q = jnp.broadcast_to(jnp.eye(p, dtype=st.dtype), (M, p, p))
    a = jnp.ones((M, p), st.dtype)
    fn, args = observables._test_error_map, (observables_problem(pr, st), m, Q, a, "error")
t0 = time.perf_counter()
lowered = fn.lower(*args)
t1 = time.perf_counter()
compiled = lowered.compile()
t2 = time.perf_counter()
jax.block_until_ready(compiled(*args))
t3 = time.perf_counter()
print("RESULT " + json.dumps(dict(lower=t1 - t0, compile=t2 - t1, run=t3 - t2)))
"""

PARTS = ("sweep", "draws", "step", "test error")


def measure(case, dtype, part, env_extra=None, root=ROOT):
    env = dict(os.environ, DMFT_NO_COMPILE_CACHE="1", PYTHONWARNINGS="ignore")
    env["PYTHONPATH"] = root + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    proc = subprocess.run([sys.executable, "-c", CHILD, *map(str, case), dtype, part],
                          env=env, capture_output=True, text=True)
    for line in proc.stdout.splitlines():
        if line.startswith("RESULT "):
            return json.loads(line[7:])
    raise RuntimeError(f"{part} failed:\n{proc.stderr[-3000:]}")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--case", default="7,1e6,2", help="T,N,p (16 replicas)")
    ap.add_argument("--dtype", default="float64", choices=("float64", "float32"))
    ap.add_argument("--parts", default=",".join(PARTS))
    ap.add_argument("--baseline-tree", default=None,
                    help="a checkout of an earlier dmft (e.g. `git worktree add /tmp/old "
                         "<commit>`): its whole sweep is timed too, in the same run, and the "
                         "ratios printed")
    ap.add_argument("--repeat", type=int, default=1, help="fresh processes per row (min kept)")
    args = ap.parse_args(argv)
    case = tuple(int(float(x)) for x in args.case.split(","))
    print(f"(T, N, p) = {case}, {args.dtype}, 16 replicas")
    print("| part | trace + lower s | XLA compile s | first run s |")
    print("|---|---|---|---|")
    def best(part, root=ROOT):
        runs = [measure(case, args.dtype, part, root=root) for _ in range(args.repeat)]
        return {k: min(r[k] for r in runs) for k in runs[0]}

    rows = {}
    for part in args.parts.split(","):
        r = rows[part] = best(part)
        print(f"| {part} | {r['lower']:.2f} | {r['compile']:.2f} | {r['run']:.2f} |", flush=True)
    if args.baseline_tree:
        old = best("sweep", os.path.abspath(args.baseline_tree))
        print(f"| sweep, {args.baseline_tree} | {old['lower']:.2f} | {old['compile']:.2f} | "
              f"{old['run']:.2f} |")
        new = rows.get("sweep") or best("sweep")
        cold_old, cold_new = old["lower"] + old["compile"], new["lower"] + new["compile"]
        print(f"trace + lower + compile: {cold_new:.2f} s against {cold_old:.2f} s "
              f"({cold_new / cold_old:.2f}x); XLA compile {new['compile'] / old['compile']:.2f}x")
    return 0


if __name__ == "__main__":
    sys.exit(main())
