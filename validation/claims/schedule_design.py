"""Schedule design by gradient descent on the DMFT: per-step learning rates against the best
constant one.

he3 (and tanh_he3), p = 2 ReLU, a = (1, −1)/√2, α = 2, schedule repeat:2 (each fresh batch used
twice), T = 6, m_0 = 0. For each target:

1. the best constant η of a log grid (one ``dmft.sweep``, seed ``--seed``);
2. the per-step schedule η_0..η_5 found by ``dmft.optimize`` (Adam on softplus⁻¹ η_t,
   gradients by reverse mode through the checkpointed DMFT, its own seed ``--seed + 11``),
   started from that best constant η: for he3 maximising ‖m_6‖, for tanh_he3 minimising the
   test error at t = 6;
3. both schedules re-evaluated by ``dmft.solve`` with a seed used by neither (``--seed + 1``),
   so that neither the grid's choice nor the optimiser's tuning to its samples favours one;
4. both schedules simulated (``dmft.simulate``, d = ``--d``, ``--seeds`` seeds), and the
   difference optimised − constant given with its z = Δ/√(SE₁² + SE₂²) (SE over seeds; for ‖m‖
   the conservative norm SE of ``_common.norm_estimate``).

Usage: python validation/claims/schedule_design.py [--quick] [--samples N] [--d D] [--seeds S]
Writes <out>/schedule_design.json (default out: validation/results) and
figures/claims/schedule_design.png.
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    base_parser,
    blowup,
    fmt,
    norm_estimate,
    print_table,
    run_dmft,
    run_sim,
    run_sweep,
    save_png,
    write_json,
)

import dmft  # noqa: E402

TARGETS = {"he3": "m_norm", "tanh_he3": "test_error"}


def parse(argv):
    ap = base_parser(__doc__)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--n-lr", type=int, default=None, help="points of the constant-η grid")
    ap.add_argument("--opt-samples", type=int, default=None, help="samples of dmft.optimize")
    ap.add_argument("--opt-steps", type=int, default=None, help="iterations of dmft.optimize")
    ap.add_argument("--opt-lr", type=float, default=0.05, help="Adam step on softplus⁻¹ η_t")
    ap.add_argument("--targets", default="he3,tanh_he3")
    ap.add_argument("--out", default="validation/results")
    ap.add_argument("--figure", default="figures/claims/schedule_design.png")
    ap.add_argument("--from-json", default=None, help="only redraw the figure from a saved JSON")
    a = ap.parse_args(argv)
    dflt = (dict(samples=8000, d=200, seeds=4, n_lr=3, opt_samples=4000, opt_steps=3)
            if a.quick else
            dict(samples=160_000, d=2000, seeds=48, n_lr=12, opt_samples=32_000, opt_steps=60))
    for k, v in dflt.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.targets = [t for t in a.targets.split(",") if t]
    return a


def problem(a, target, lr):
    return dmft.make_problem(target, p=2, activation="relu", alpha=a.alpha, lr=lr,
                             steps=a.steps, schedule="repeat:2")


def summary(traj, what):
    """(value, SE) per step of ‖m_t‖ or the test error of a trajectory."""
    if what == "m_norm":
        return norm_estimate(traj.m)
    return np.asarray(traj.test_error.value), np.asarray(traj.test_error.error)


def study(a, target, log):
    what = TARGETS[target]
    T = a.steps
    better = (lambda x, y: x > y) if what == "m_norm" else (lambda x, y: x < y)
    times = {}
    t0 = time.perf_counter()
    lrs = [float(f"{x:.3g}") for x in np.geomspace(0.1, 2.0, a.n_lr)]
    _, runs = run_sweep(problem(a, target, lrs[0]), {"lr": [np.full(T, lr) for lr in lrs]},
                        a.samples, a.seed)
    grid = {}
    for lr, (tr, status, _) in zip(lrs, runs, strict=True):
        v, e = summary(tr, what)
        ok = status == "ok" and not blowup(tr) and len(v) == T + 1
        grid[lr] = dict(value=v, se=e, status=status, blowup=blowup(tr), usable=ok)
    usable = [lr for lr in lrs if grid[lr]["usable"]]
    best = usable[0]
    for lr in usable:
        if better(grid[lr]["value"][T], grid[best]["value"][T]):
            best = lr
    times["sweep_s"] = time.perf_counter() - t0
    log(f"[{target}] constant-η sweep ({len(lrs)} points, {a.samples} samples): best η = {best} "
        f"with {what}(T) = {fmt(grid[best]['value'][T], grid[best]['se'][T])} "
        f"({times['sweep_s']:.0f} s)")

    t0 = time.perf_counter()
    res = dmft.optimize(problem(a, target, best), what, wrt=("lr",), steps=a.opt_steps,
                        samples=a.opt_samples, seed=a.seed + 11, replicas=8,
                        learning_rate=a.opt_lr, progress=False)
    times["optimize_s"] = time.perf_counter() - t0
    lr_opt = np.asarray(res.problem.lr)
    hist = res.history["objective"]
    log(f"[{target}] dmft.optimize ({a.opt_steps} Adam steps, {a.opt_samples} samples, seed "
        f"{a.seed + 11}): objective {hist[0]:.5f} -> {hist[res.best_iteration]:.5f}, "
        f"status {res.status}; eta_t = {np.round(lr_opt, 3).tolist()} "
        f"({times['optimize_s']:.0f} s)")

    t0 = time.perf_counter()
    schedules = {"constant": np.full(T, best), "optimised": lr_opt}
    dm, sim = {}, {}
    for name, lr in schedules.items():
        tr, status, _ = run_dmft(problem(a, target, lr), a.samples, a.seed + 1)
        v, e = summary(tr, what)
        dm[name] = dict(value=v, se=e, status=status)
    times["dmft_eval_s"] = time.perf_counter() - t0
    t0 = time.perf_counter()
    for name, lr in schedules.items():
        tr, status, sec = run_sim(problem(a, target, lr), a.d, a.seeds, a.seed + 2)
        v, e = summary(tr, what)
        sim[name] = dict(value=v, se=e, status=status, seconds=sec)
        log(f"[{target}] simulate {name}: d={a.d} x {a.seeds} seeds, {status}, {sec:.0f} s, "
            f"{what}(T) = {fmt(v[T], e[T])}")
    times["simulate_s"] = time.perf_counter() - t0

    def diff(d):
        dv = d["optimised"]["value"][T] - d["constant"]["value"][T]
        se = float(np.hypot(d["optimised"]["se"][T], d["constant"]["se"][T]))
        return dv, se, dv / se if se > 0 else float("nan")

    z_theory_sim = {name: (dm[name]["value"][T] - sim[name]["value"][T])
                    / np.hypot(dm[name]["se"][T], sim[name]["se"][T]) for name in schedules}
    return dict(target=target, objective=what, lrs=lrs, grid=grid, best_constant=best,
                optimised_lr=lr_opt, optimize_history=res.history,
                optimize_best_iteration=res.best_iteration, optimize_status=res.status,
                dmft=dm, sim=sim, dmft_diff=diff(dm), sim_diff=diff(sim),
                z_theory_vs_sim=z_theory_sim, times=times)


def figure(a, results, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    n = len(results)
    fig, axs = plt.subplots(n, 2, figsize=(11, 3.8 * n), layout="constrained", squeeze=False)
    for row, r in zip(axs, results, strict=True):
        T = a["steps"]
        t = np.arange(T + 1)
        ax = row[0]
        lr_opt = np.asarray(r["optimised_lr"], dtype=float)
        ax.step(np.arange(T + 1), np.full(T + 1, r["best_constant"]), where="post", color="C0",
                label=f"best constant η = {r['best_constant']:g}")
        ax.step(np.arange(T + 1), np.append(lr_opt, lr_opt[-1]), where="post", color="C3",
                label="optimised η_t (η_t acts from t to t + 1)")
        ax.plot(np.arange(T), r["optimised_lr"], "o", color="C3", ms=4)
        ax.set_xlabel("step t")
        ax.set_ylabel("η_t")
        ax.set_title(f"{r['target']}, repeat:2, p=2 ReLU, α={a['alpha']:g}: schedules")
        ax.legend(fontsize=8)
        ax = row[1]
        label = "‖m_t‖" if r["objective"] == "m_norm" else "test error"
        for name, c in (("constant", "C0"), ("optimised", "C3")):
            d, s = r["dmft"][name], r["sim"][name]
            v, e = np.asarray(d["value"], float), np.asarray(d["se"], float)
            ax.plot(t[:len(v)], v, "-", color=c, label=f"DMFT {name}")
            ax.fill_between(t[:len(v)], v - e, v + e, color=c, alpha=0.25)
            sv, se = np.asarray(s["value"], float), np.asarray(s["se"], float)
            ax.errorbar(t[:len(sv)] + 0.08, sv, se, fmt="s", mfc="none", color=c, capsize=2,
                        label=f"sim {name} (d={a['d']}, {a['seeds']} seeds)")
        ax.set_xlabel("step t")
        ax.set_ylabel(label)
        dv, dse, z = r["sim_diff"]
        ax.set_title(f"{label}: sim optimised − constant at t={T}: {dv:+.4f} ± {dse:.4f} "
                     f"(z={z:+.1f})", fontsize=9)
        ax.legend(fontsize=7)
    save_png(fig, png)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse(argv)
    if a.from_json:
        import json

        with open(a.from_json) as f:
            data = json.load(f)
        figure(data["args"], data["results"], a.figure)
        print(f"redrew {a.figure} from {a.from_json}")
        return 0
    t0 = time.perf_counter()

    def log(msg):
        print(msg, flush=True)

    log(f"[schedule_design] targets {a.targets}, repeat:2, alpha={a.alpha}, T={a.steps}; DMFT "
        f"samples={a.samples}; optimize samples={a.opt_samples} x {a.opt_steps} steps; sim "
        f"d={a.d} x {a.seeds} seeds")
    results = [study(a, target, log) for target in a.targets]
    T = a.steps
    for r in results:
        what = r["objective"]
        print(f"\n{r['target']}: {what} at t = {T} (DMFT seed {a.seed + 1}, "
              f"{a.samples} samples; sim d={a.d} x {a.seeds} seeds)")
        rows = []
        for name in ("constant", "optimised"):
            lr = (np.full(T, r["best_constant"]) if name == "constant" else r["optimised_lr"])
            d, s = r["dmft"][name], r["sim"][name]
            rows.append([name, " ".join(f"{x:.3f}" for x in lr), fmt(d["value"][T], d["se"][T]),
                         fmt(s["value"][T], s["se"][T]), f"{r['z_theory_vs_sim'][name]:+.2f}"])
        for label, key in (("difference (DMFT)", "dmft_diff"), ("difference (sim)", "sim_diff")):
            dv, dse, z = r[key]
            rows.append([label, "", fmt(dv, dse) if key == "dmft_diff" else "",
                         fmt(dv, dse) if key == "sim_diff" else "", f"z={z:+.2f}"])
        print_table(["schedule", "eta_0..eta_T-1", "DMFT", "sim", "z (DMFT-sim)"], rows)
        print("times: " + ", ".join(f"{k} {v:.0f}" for k, v in r["times"].items()))
    verdicts = []
    for r in results:
        dv, dse, z = r["sim_diff"]
        sign = 1 if r["objective"] == "m_norm" else -1
        good = sign * z > 4
        verdicts.append(f"{r['target']} ({r['objective']}): simulator difference "
                        f"{dv:+.4f} ± {dse:.4f}, z = {z:+.2f} -> "
                        + ("improvement confirmed (> 4 SE)" if good else
                           "not confirmed at 4 SE" + (" (right sign)" if sign * z > 0 else "")))
    for v in verdicts:
        print("VERDICT: " + v)
    wall = time.perf_counter() - t0
    os.makedirs(a.out, exist_ok=True)
    write_json(os.path.join(a.out, "schedule_design.json"),
               dict(args=vars(a), results=results, verdicts=verdicts, wall_time_s=wall))
    figure(vars(a), results, a.figure)
    print(f"wrote {a.out}/schedule_design.json and {a.figure} ({wall:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
