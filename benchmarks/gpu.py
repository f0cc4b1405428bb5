"""The GPU table: time, device memory and the bandwidth floor of the solver, in one run.

    PYTHONPATH=. python benchmarks/gpu.py            # on a GPU machine
    PYTHONPATH=. python benchmarks/gpu.py --quick    # tiny sizes, any machine

It prints one table. Every row is measured in a fresh subprocess (so that compile caches and the
device's peak-memory counter start empty):

* DMFT ``dmft.solve`` (tanh_he3 target, ReLU student, alternating second layer, α = 3,
  η = 0.2, reuse schedule, Stein response, 16 replicas) at (T, N, p) = (7, 1e6, 2),
  (28, 1e5, 2), (100, 1e5, 4), (50, 1e7, 2), (200, 1e6, 8) in float64 and float32, and
  (20, 1e8, 2) in float32:
    - ``cold``: the first solve in the process (tracing + XLA compile/autotune + run);
    - ``warm``: a second solve of the same structure with another seed (compile cached);
    - ``compile``: cold − warm;
    - ``peak``: the device's peak bytes in use (``memory_stats()["peak_bytes_in_use"]``), or on
      a CPU the process's peak RSS, against ``dmft.solver.memory_estimate(...)["peak"]``;
    - ``floor``: the time to stream the live histories once per step on the device: one
      reduction over z and g (replicas × N/replicas × (T+1) p in the solve's history dtype),
      timed warm, times Σ_t (t+1)/(T+1) = (T+2)/2; ``warm/floor`` is the achieved ratio.
* the simulator ``dmft.simulate`` (p = 4, α = 3, 8 seeds, 10 GD steps, float64) at d = 1e4 and
  3e4: seconds per GD step (warm, data draw included) and peak memory;
* the plain-numpy baseline of ``benchmarks/numpy_baseline.py`` on the host's CPU at
  (7, 1e6, 2), and the ratio baseline / warm DMFT float64 at the same size;
* the cold-start breakdown of the first DMFT case: trace + lower, and XLA compile, timed with
  ``run_sweep.lower(...).compile()`` under ``dmft._devices.gpu_rng_kernel`` as ``dmft.solve``
  calls it; on a GPU it is repeated with XLA's autotuning off (``--xla_gpu_autotune_level=0``)
  to show autotuning's share, and with the threefry hash unrolled into the program
  (``DMFT_GPU_RNG_KERNEL=0``) to show the share of JAX's threefry kernel.

``--quick`` shrinks every size (N by 50-1000x, d to 500/1000) so that the script runs anywhere,
unchanged; ``--budget`` (seconds, default 280) skips the rows left when it is spent, and says so.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROBLEM = dict(target="tanh_he3", activation="relu", second_layer="alternating", alpha=3.0, lr=0.2)
REPLICAS = 16
RNG_KERNEL_ENV = "DMFT_GPU_RNG_KERNEL"  # "0": the threefry hash unrolled (dmft._devices)

# (T, N, p, dtype)
DMFT_FULL = [(7, 10**6, 2, d) for d in ("float64", "float32")] + [
    (28, 10**5, 2, "float64"), (28, 10**5, 2, "float32"),
    (100, 10**5, 4, "float64"), (100, 10**5, 4, "float32"),
    (50, 10**7, 2, "float64"), (50, 10**7, 2, "float32"),
    (200, 10**6, 8, "float64"), (200, 10**6, 8, "float32"),
    (20, 10**8, 2, "float32"),
]
DMFT_QUICK = [(7, 20_000, 2, "float64"), (7, 20_000, 2, "float32"),
              (28, 8_000, 2, "float64"), (28, 8_000, 2, "float32")]
SIM_FULL = [(10_000, 8), (30_000, 8)]
SIM_QUICK = [(500, 2), (1000, 2)]
SIM_STEPS = 10
BASELINE_FULL = (7, 10**6, 2)
BASELINE_QUICK = (7, 20_000, 2)


# ------------------------------------------------------------------------------------------
# children (one measurement each, in a fresh process)
# ------------------------------------------------------------------------------------------


def _jax():
    import jax

    jax.config.update("jax_enable_x64", True)
    return jax


def _peak_bytes(jax) -> tuple[int, str]:
    dev = jax.devices()[0]
    if dev.platform != "cpu":
        st = dev.memory_stats() or {}
        if "peak_bytes_in_use" in st:
            return int(st["peak_bytes_in_use"]), "device"
    return int(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss) * 1024, "host RSS"


def _problem(T, p):
    import dmft

    return dmft.make_problem(PROBLEM["target"], p=p, activation=PROBLEM["activation"],
                             second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                             lr=PROBLEM["lr"], steps=T)


def _stream_time(jax, shape, dtype, repeat=3) -> float:
    """Warm time of one reduction over two arrays of ``shape`` (z and g) on the device."""
    import jax.numpy as jnp

    z = jax.random.normal(jax.random.key(1), shape, dtype)
    g = jax.random.normal(jax.random.key(2), shape, dtype)
    read = jax.jit(lambda z, g: jnp.sum(z, axis=1) + jnp.sum(g, axis=1))
    jax.block_until_ready(read(z, g))
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        jax.block_until_ready(read(z, g))
        best = min(best, time.perf_counter() - t0)
    return best


def child_dmft(T, N, p, dtype) -> dict:
    jax = _jax()
    import dmft

    pr = _problem(T, p)
    est = dmft.solver.memory_estimate(pr, N, replicas=REPLICAS, dtype=dtype)
    times = []
    for seed in (0, 1):
        t0 = time.perf_counter()
        tr = dmft.solve(pr, N, seed=seed, replicas=REPLICAS, progress=False, dtype=dtype)
        times.append(time.perf_counter() - t0)
    peak, where = _peak_bytes(jax)
    n = N // REPLICAS
    # the floor after the solves, so that its arrays do not count in the peak
    t_pass = _stream_time(jax, (REPLICAS, n, (T + 1) * p), dtype)
    floor = t_pass * (T + 2) / 2
    return dict(cold=times[0], warm=times[1], peak=peak, peak_where=where, est=est["peak"],
                floor=floor, status=tr.status, platform=jax.devices()[0].platform)


def child_compile(T, N, p, dtype) -> dict:
    """Cold start split into trace + lower and XLA compile (autotuning included on GPU)."""
    jax = _jax()
    import diffrax

    from dmft.solver import _solve, _step

    pr = _problem(T, p)
    t0 = time.perf_counter()
    st = _solve.validate(pr, N, 0, REPLICAS, None, "stein", dtype)
    args = (st, pr.numbers(st.kdtype), _solve.replica_keys(0, REPLICAS),
            diffrax.NoProgressMeter())
    from dmft._devices import gpu_rng_kernel

    with gpu_rng_kernel():  # as dmft.solve calls it
        lowered = _step.run_sweep.lower(*args)
        t1 = time.perf_counter()
        compiled = lowered.compile()
        t2 = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        t3 = time.perf_counter()
    return dict(lower=t1 - t0, compile=t2 - t1, run=t3 - t2,
                xla_flags=os.environ.get("XLA_FLAGS", ""))


def child_sim(d, seeds) -> dict:
    jax = _jax()
    import dmft

    pr = dmft.make_problem(PROBLEM["target"], p=4, activation=PROBLEM["activation"],
                           second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                           lr=PROBLEM["lr"], steps=SIM_STEPS)
    times = []
    for seed in (0, 1):
        t0 = time.perf_counter()
        dmft.simulate(pr, d, seeds=seeds, seed=seed, progress=False)
        times.append(time.perf_counter() - t0)
    peak, where = _peak_bytes(jax)
    return dict(cold=times[0], warm=times[1], per_step=times[1] / SIM_STEPS, peak=peak,
                peak_where=where)


def child_baseline(T, N, p) -> dict:
    sys.path.insert(0, HERE)
    from numpy_baseline import numpy_dmft

    out = numpy_dmft(PROBLEM["target"], p=p, activation=PROBLEM["activation"],
                     second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                     lr=PROBLEM["lr"], steps=T, samples=N, seed=0)
    return dict(time=out["time_s"])


CHILDREN = {"dmft": child_dmft, "compile": child_compile, "sim": child_sim,
            "baseline": child_baseline}


def run_child(kind: str, args: list, timeout: float, env_extra: dict | None = None) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.update(env_extra or {})
    cmd = [sys.executable, os.path.abspath(__file__), "--child", kind, json.dumps(args)]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=max(timeout, 1.0),
                             env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-2:]
        return {"error": f"exit {res.returncode}: {' | '.join(tail)[-160:]}"}
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------------------------------------
# parent: the table
# ------------------------------------------------------------------------------------------


def _gb(x):
    return f"{x / 2**30:7.2f}"


def _n(x):
    return f"{x:.0e}".replace("e+0", "e")


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="the solver's GPU table")
    ap.add_argument("--quick", action="store_true", help="tiny sizes (runs on any CPU)")
    ap.add_argument("--budget", type=float, default=280.0,
                    help="seconds; rows left when it is spent are skipped (default 280)")
    ap.add_argument("--no-sim", action="store_true", help="skip the simulator rows")
    ap.add_argument("--no-baseline", action="store_true", help="skip the numpy baseline")
    ap.add_argument("--no-breakdown", action="store_true", help="skip the cold-start breakdown")
    ap.add_argument("--rows", type=int, default=None,
                    help="run only the first ROWS DMFT cases (a smoke test)")
    ap.add_argument("--child", nargs=2, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        kind, payload = args.child
        print("RESULT " + json.dumps(CHILDREN[kind](*json.loads(payload))), flush=True)
        return 0

    start = time.perf_counter()

    def left():
        return args.budget - (time.perf_counter() - start)

    def dmft_row(name, dtype, r):
        print(f"{name:<22}{dtype:<9}{r['cold']:8.2f}{r['warm']:8.2f}{r['cold'] - r['warm']:8.2f}"
              f"{_gb(r['peak']):>9}{_gb(r['est']):>8}{r['floor']:9.4f}"
              f"{r['warm'] / r['floor']:11.1f}  {r['peak_where']}"
              + ("" if r["status"] == "ok" else f", {r['status']}"), flush=True)

    dmft_cases = (DMFT_QUICK if args.quick else DMFT_FULL)[:args.rows]
    sim_cases = SIM_QUICK if args.quick else SIM_FULL
    base_case = BASELINE_QUICK if args.quick else BASELINE_FULL

    rows = []
    print(f"{'case (T, N, p)':<22}{'dtype':<9}{'cold s':>8}{'warm s':>8}{'compile':>8}"
          f"{'peak GiB':>9}{'est GiB':>8}{'floor s':>9}{'warm/floor':>11}  note", flush=True)
    platform = "?"
    for T, N, p, dtype in dmft_cases:
        name = f"dmft ({T}, {_n(N)}, {p})"
        if left() <= 5:
            print(f"{name:<22}{dtype:<9}  skipped (budget spent)", flush=True)
            continue
        r = run_child("dmft", [T, N, p, dtype], left())
        rows.append((name, dtype, r))
        if "error" in r:
            print(f"{name:<22}{dtype:<9}  {r['error']}", flush=True)
            continue
        platform = r["platform"]
        dmft_row(name, dtype, r)

    if not args.no_sim:
        for d, seeds in sim_cases:
            name = f"simulate d={_n(d)}"
            if left() <= 5:
                print(f"{name:<22}{'float64':<9}  skipped (budget spent)", flush=True)
                continue
            r = run_child("sim", [d, seeds], left())
            if "error" in r:
                print(f"{name:<22}{'float64':<9}  {r['error']}", flush=True)
                continue
            print(f"{name:<22}{'float64':<9}{r['cold']:8.2f}{r['warm']:8.2f}"
                  f"{r['cold'] - r['warm']:8.2f}{_gb(r['peak']):>9}{'-':>8}{'-':>9}{'-':>11}  "
                  f"{r['per_step']:.4f} s per GD step ({seeds} seeds, {SIM_STEPS} steps, "
                  f"draw included), {r['peak_where']}", flush=True)

    if not args.no_baseline:
        T, N, p = base_case
        name = f"numpy ({T}, {_n(N)}, {p})"
        if left() <= 5:
            print(f"{name:<22}{'float64':<9}  skipped (budget spent)", flush=True)
        else:
            r = run_child("baseline", [T, N, p], left())
            if "error" in r:
                print(f"{name:<22}{'float64':<9}  {r['error']}", flush=True)
            else:
                same = [x for x in rows if x[0] == f"dmft ({T}, {_n(N)}, {p})"
                        and x[1] == "float64" and "error" not in x[2]]
                ratio = (f"baseline / dmft warm = {r['time'] / same[0][2]['warm']:.1f}x"
                         if same else "no dmft row to compare")
                print(f"{name:<22}{'float64':<9}{r['time']:8.2f}{'-':>8}{'-':>8}{'-':>9}"
                      f"{'-':>8}{'-':>9}{'-':>11}  host CPU ({os.cpu_count()} cores), {ratio}",
                      flush=True)

    # cold-start breakdown of the first case
    T, N, p, dtype = dmft_cases[0]
    variants = [] if args.no_breakdown else [("", {})]
    if variants and platform not in ("cpu", "?"):
        flags = (os.environ.get("XLA_FLAGS", "") + " --xla_gpu_autotune_level=0").strip()
        variants.append((" (autotune off)", {"XLA_FLAGS": flags}))
        # the threefry hash unrolled into the program at every draw site
        variants.append((" (threefry unrolled)", {RNG_KERNEL_ENV: "0"}))
    for label, env in variants:
        if left() <= 5:
            print(f"cold start{label}: skipped (budget spent)", flush=True)
            continue
        r = run_child("compile", [T, N, p, dtype], left(), env)
        if "error" in r:
            print(f"cold start{label}: {r['error']}", flush=True)
            continue
        print(f"cold start of dmft ({T}, {_n(N)}, {p}) {dtype}{label}: trace+lower "
              f"{r['lower']:.2f} s, XLA compile {r['compile']:.2f} s, first run {r['run']:.2f} s",
              flush=True)
    print(f"platform {platform}; total {time.perf_counter() - start:.0f} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
