"""Time and peak memory of ``dmft.solve`` against the plain-numpy baseline, on a (T, N, p) grid.

    PYTHONPATH=. python benchmarks/dmft_speed.py            # full grid (several minutes)
    PYTHONPATH=. python benchmarks/dmft_speed.py --quick    # tiny grid (seconds)
    PYTHONPATH=. python benchmarks/dmft_speed.py --only T7_N1e6_p2 --repeat 2
    PYTHONPATH=. python benchmarks/dmft_speed.py --only T7_N1e6_p2 --chunks none,65536,16384

Problem: tanh_he3 target (k = 2), ReLU student, alternating second layer, α = 3, η = 0.2, square
loss, reuse schedule, Stein response, float64. ``dmft.solve`` uses ``replicas=16`` (its default)
and ``progress=False``; the baseline is one process of the same N samples (same N·T work).

How things are measured. Every measurement runs in a fresh subprocess (``--child``), which
reports its own peak resident set size (``resource.getrusage(RUSAGE_SELF).ru_maxrss``), so the
peak includes the interpreter and the imports (shown separately as "import RSS").

* dmft "cold": the first ``solve()`` in the process, compilation included. "warm": a second
  ``solve()`` with the same problem and N and another seed, which reuses the compiled sweep
  (``dmft.solver`` caches it per problem and size; the child also points JAX's persistent cache
  at a fresh temporary directory). Throughput ratios use the warm time; the cold ratio is
  printed too.
* ``--dtype float32`` times the solver in float32 (the baseline stays float64); the default and
  the numbers quoted against the issue's target are float64.
* baseline: one call (numpy has nothing to compile). It is skipped, with the reason printed, when
  its dense N (T+1)² p² float64 array would exceed ``--max-baseline-gb`` (default 16) or the
  memory the machine has available now.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(HERE)

PROBLEM = dict(target="tanh_he3", activation="relu", second_layer="alternating", alpha=3.0, lr=0.2)

# name -> (T, N, p)
GRID = {
    "T3_N1e4_p2": (3, 10_000, 2),
    "T7_N1e5_p2": (7, 100_000, 2),
    "T7_N1e6_p2": (7, 1_000_000, 2),
    "T28_N1e5_p2": (28, 100_000, 2),
    "T100_N1e5_p4": (100, 100_000, 4),
}
QUICK = {
    "T3_N2e4_p2": (3, 20_000, 2),
    "T7_N5e4_p2": (7, 50_000, 2),
}


def _maxrss_mb() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024.0  # KiB on Linux


# ------------------------------------------------------------------------------------------
# children
# ------------------------------------------------------------------------------------------


def child_dmft(T: int, N: int, p: int, chunk, replicas: int, dtype: str = "float64") -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    cache = tempfile.mkdtemp(prefix="dmft_speed_jaxcache_")
    jax.config.update("jax_compilation_cache_dir", cache)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", -1)
    import numpy as np

    import dmft

    rss_import = _maxrss_mb()
    pr = dmft.make_problem(PROBLEM["target"], p=p, activation=PROBLEM["activation"],
                           second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                           lr=PROBLEM["lr"], steps=T)
    times, loops = [], []
    for seed in (0, 1):
        t0 = time.perf_counter()
        tr = dmft.solve(pr, N, seed=seed, replicas=replicas, chunk_size=chunk, progress=False,
                        dtype=dtype)
        times.append(time.perf_counter() - t0)
        loops.append(tr.settings["wall_time_s"])
    return dict(cold_s=times[0], warm_s=times[1], loop_cold_s=loops[0], loop_warm_s=loops[1],
                rss_mb=_maxrss_mb(), rss_import_mb=rss_import,
                m_T=float(np.asarray(tr.m.value)[-1, 0, 0]),
                Q_T=float(np.asarray(tr.Q.value)[-1, 0, 0]))


def child_baseline(T: int, N: int, p: int) -> dict:
    sys.path.insert(0, HERE)
    from numpy_baseline import numpy_dmft

    rss_import = _maxrss_mb()
    out = numpy_dmft(PROBLEM["target"], p=p, activation=PROBLEM["activation"],
                     second_layer=PROBLEM["second_layer"], alpha=PROBLEM["alpha"],
                     lr=PROBLEM["lr"], steps=T, samples=N, seed=0)
    return dict(time_s=out["time_s"], rss_mb=_maxrss_mb(), rss_import_mb=rss_import,
                m_T=float(out["m"][-1, 0, 0]), Q_T=float(out["Q"][-1, 0, 0]))


def run_child(args: list[str], timeout: float) -> dict:
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    cmd = [sys.executable, os.path.abspath(__file__), "--child", *args]
    try:
        res = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=env)
    except subprocess.TimeoutExpired:
        return {"error": f"timed out after {timeout:.0f} s"}
    lines = [ln for ln in res.stdout.splitlines() if ln.startswith("RESULT ")]
    if res.returncode != 0 or not lines:
        tail = (res.stderr or res.stdout).strip().splitlines()[-3:]
        return {"error": f"exit {res.returncode}: {' | '.join(tail)}"}
    return json.loads(lines[-1][len("RESULT "):])


# ------------------------------------------------------------------------------------------
# parent
# ------------------------------------------------------------------------------------------


def _mem_available_gb() -> float:
    try:
        with open("/proc/meminfo") as fh:
            for ln in fh:
                if ln.startswith("MemAvailable:"):
                    return int(ln.split()[1]) / 2**20
    except OSError:
        pass
    return float("inf")


def _fmt_t(x):
    return "-" if x is None else f"{x:8.2f}"


def _fmt_m(x):
    return "-" if x is None else f"{x / 1024:6.2f}"


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description="dmft.solve vs the plain-numpy baseline")
    ap.add_argument("--quick", action="store_true", help="tiny grid (seconds)")
    ap.add_argument("--only", action="append", help="run only this config name (repeatable)")
    ap.add_argument("--repeat", type=int, default=1,
                    help="repeat every config this many times (T7_N1e6_p2 runs >= 2 times "
                         "in the full grid)")
    ap.add_argument("--chunks", default="none",
                    help="comma-separated chunk_size values for dmft.solve ('none' = whole "
                         "replica); the baseline runs once per config")
    ap.add_argument("--replicas", type=int, default=16)
    ap.add_argument("--dtype", choices=("float64", "float32"), default="float64",
                    help="dmft.solve's dtype (the baseline is always float64)")
    ap.add_argument("--no-baseline", action="store_true")
    ap.add_argument("--max-baseline-gb", type=float, default=16.0,
                    help="skip the baseline when its dense response array exceeds this")
    ap.add_argument("--timeout", type=float, default=1800.0, help="per child, seconds")
    ap.add_argument("--json", help="also write the results to this JSON file")
    ap.add_argument("--child", nargs="+", help=argparse.SUPPRESS)
    args = ap.parse_args(argv)

    if args.child:
        kind, T, N, p = args.child[0], *map(int, args.child[1:4])
        if kind == "dmft":
            chunk = None if args.child[4] == "none" else int(args.child[4])
            res = child_dmft(T, N, p, chunk, int(args.child[5]), args.child[6])
        else:
            res = child_baseline(T, N, p)
        print("RESULT " + json.dumps(res), flush=True)
        return 0

    sys.path.insert(0, HERE)
    from numpy_baseline import dense_response_bytes

    grid = QUICK if args.quick else GRID
    if args.only:
        allg = {**GRID, **QUICK}
        unknown = [n for n in args.only if n not in allg]
        if unknown:
            ap.error(f"unknown config {unknown}; choose from {sorted(allg)}")
        grid = {n: allg[n] for n in args.only}
    chunks = [c.strip().lower() for c in args.chunks.split(",")]

    print(f"problem: {PROBLEM}, square loss, reuse, Stein; dmft.solve {args.dtype}, replicas="
          f"{args.replicas}; cpu count {os.cpu_count()}; MemAvailable "
          f"{_mem_available_gb():.1f} GB", flush=True)
    rows = []
    for name, (T, N, p) in grid.items():
        reps = max(args.repeat, 2 if (name == "T7_N1e6_p2" and not args.only) else 1)
        dense_gb = dense_response_bytes(N, T, p) / 1e9
        base, base_note = None, ""
        if args.no_baseline:
            base_note = "baseline not requested"
        elif dense_gb > args.max_baseline_gb:
            base_note = (f"baseline skipped: dense N(T+1)^2p^2 array = {dense_gb:.1f} GB > "
                         f"--max-baseline-gb {args.max_baseline_gb:g}")
        elif dense_gb / 2 + 1.0 > _mem_available_gb():
            base_note = (f"baseline skipped: ~{dense_gb / 2:.1f} GB resident needed, "
                         f"{_mem_available_gb():.1f} GB available now")
        else:
            print(f"[{name}] baseline (dense array {dense_gb:.2f} GB virtual) ...", flush=True)
            base = run_child(["baseline", str(T), str(N), str(p)], args.timeout)
            if "error" in base:
                base_note = "baseline failed: " + base["error"]
                base = None
            else:
                print(f"[{name}] baseline {base['time_s']:.2f} s, {base['rss_mb']:.0f} MB",
                      flush=True)
        if base_note:
            print(f"[{name}] {base_note}", flush=True)
        for chunk in chunks:
            for rep in range(reps):
                print(f"[{name}] dmft.solve chunk_size={chunk} run {rep + 1}/{reps} ...",
                      flush=True)
                d = run_child(["dmft", str(T), str(N), str(p), chunk, str(args.replicas),
                               args.dtype], args.timeout)
                if "error" in d:
                    print(f"[{name}] dmft failed: {d['error']}", flush=True)
                else:
                    print(f"[{name}] dmft cold {d['cold_s']:.2f} s, warm {d['warm_s']:.2f} s, "
                          f"{d['rss_mb']:.0f} MB", flush=True)
                rows.append(dict(name=name, T=T, N=N, p=p, chunk=chunk, rep=rep + 1, dmft=d,
                                 base=base, base_note=base_note))

    print()
    print("times in s (dmft warm = 2nd solve() in the process, compile cached; cold = 1st, "
          "with compilation); peak RSS in GiB of the whole child process")
    hdr = (f"{'config':<14} {'chunk':>6} {'run':>3} | {'dmft warm':>9} {'cold':>8} "
           f"{'RSS':>6} | {'base':>8} {'RSS':>6} | {'thru x':>7} {'(cold)':>7} {'mem x':>6}")
    print(hdr)
    print("-" * len(hdr))
    for r in rows:
        d, b = r["dmft"], r["base"]
        ok = "error" not in d
        warm = d.get("warm_s") if ok else None
        cold = d.get("cold_s") if ok else None
        drss = d.get("rss_mb") if ok else None
        bt = b["time_s"] if b else None
        brss = b["rss_mb"] if b else None
        thr = f"{bt / warm:7.1f}" if (bt and warm) else "-"
        thr_c = f"{bt / cold:7.1f}" if (bt and cold) else "-"
        memx = f"{brss / drss:6.2f}" if (brss and drss) else "-"
        print(f"{r['name']:<14} {r['chunk']:>6} {r['rep']:>3} | {_fmt_t(warm):>9} "
              f"{_fmt_t(cold):>8} {_fmt_m(drss):>6} | {_fmt_t(bt):>8} {_fmt_m(brss):>6} | "
              f"{thr:>7} {thr_c:>7} {memx:>6}")
        if not ok:
            print(f"    dmft: {d['error']}")
    notes = sorted({r["base_note"] for r in rows if r["base_note"]})
    for n in notes:
        print("  note:", n)
    imp = [r["dmft"].get("rss_import_mb") for r in rows if "error" not in r["dmft"]]
    bimp = [r["base"]["rss_import_mb"] for r in rows if r["base"]]
    if imp:
        print(f"  import-only RSS: dmft child {max(imp) / 1024:.2f} GiB (jax + dmft), "
              f"baseline child {max(bimp) / 1024 if bimp else float('nan'):.2f} GiB (numpy)")
    print("  thru x = baseline time / dmft warm time (same N, same T); mem x = baseline peak "
          "RSS / dmft peak RSS")
    if args.json:
        with open(args.json, "w") as fh:
            json.dump(rows, fh, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
