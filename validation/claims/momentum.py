"""Does heavy-ball momentum change what batch reuse learns? The (η, β) diagram of ‖m_T‖ for he3.

he3 (information exponent 3), p = 2 ReLU units, a = (1, −1)/√2, α = 2, one batch reused for
T = 10 steps from m_0 = 0 (claim (a): plain GD with reuse learns he3, fresh batches do not).

Part 1, the diagram: one ``dmft.sweep`` over the outer product of β ∈ BETAS and a log grid of
η (one compilation; common random numbers). Part 2, equal effective step: heavy ball with
constant β moves, in a slowly varying landscape, like GD with the effective step η/(1 − β). For
each β > 0 a sweep over η = η_eff (1 − β) on one common grid of η_eff is compared with plain
GD (β = 0) at η = η_eff: the difference ‖m_T‖(β) − ‖m_T‖(0) with the conservative
SE = √(SE_β² + SE_0²) (the points share their samples, so this overstates the error of the
difference). Part 3, the simulator at the points that decide the verdict: of the differences
above 4 SE in the DMFT, the largest one (the easiest to resolve in a simulation), at both of its
points, with the same seeds (same teacher, initialisation and data for both points): the
simulated difference of ‖seed-mean m_T‖ has a jackknife SE over the seeds, which keeps the
pairing, and the unpaired SE √(SE_β² + SE_0²) is printed too.

‖m_T‖ ± SE as in the other claims studies; "learned" means ‖m_T‖ > 4 SE; a point whose mean
diag Q exceeds 100 (or that diverges) is a blow-up, blank in the heat map.

VERDICT: "CHANGES" if some η_eff has |difference| > 4 SE confirmed by the simulator (the
simulated difference > 4 of its jackknife SE, same sign), "NO CHANGE" if no η_eff has one, otherwise
"UNCONFIRMED".

Usage: python validation/claims/momentum.py [--quick] [--samples N] [--d D] [--seeds S]
Writes <out>/momentum.png and <out>/momentum.json (default out: figures/claims).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    base_parser,
    blowup,
    fmt,
    norm_estimate,
    print_table,
    run_sim,
    run_sweep,
    save_png,
    write_json,
)

import dmft  # noqa: E402

BETAS = (0.0, 0.25, 0.5, 0.75, 0.9)


def parse(argv):
    ap = base_parser(__doc__)
    ap.add_argument("--n-lr", type=int, default=None, help="points of the log grids of η")
    ap.add_argument("--lr-min", type=float, default=0.1)
    ap.add_argument("--lr-max", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=10)
    ap.add_argument("--out", default="figures/claims")
    a = ap.parse_args(argv)
    dflt = (dict(samples=8_000, d=200, seeds=4, n_lr=4) if a.quick
            else dict(samples=400_000, d=2000, seeds=256, n_lr=12))
    for k, v in dflt.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def problem(a, lr=1.0, beta=0.0):
    return dmft.make_problem("he3", p=2, activation="relu", alpha=2.0, lr=lr, steps=a.steps,
                             schedule="reuse", momentum=beta)


def norms(points):
    """Per point: (‖m_T‖, SE, blow-up) from run_sweep's list."""
    out = []
    for tr, status, _ in points:
        bad = status != "ok" or blowup(tr)
        v, e = norm_estimate(tr.m) if len(tr.step) == a_steps(tr) else (None, None)
        out.append((np.nan, np.nan, True) if bad or v is None else (float(v[-1]),
                                                                    float(e[-1]), False))
    return out


def paired_se(m_a, m_b):
    """Jackknife SE over seeds of ‖mean m_a‖ − ‖mean m_b‖, the seeds paired (S, p, k) each."""
    S = m_a.shape[0]
    tot_a, tot_b = m_a.sum(0), m_b.sum(0)
    loo = np.array([np.linalg.norm((tot_a - m_a[i]) / (S - 1))
                    - np.linalg.norm((tot_b - m_b[i]) / (S - 1)) for i in range(S)])
    return float(np.sqrt((S - 1) / S * np.sum((loo - loo.mean()) ** 2)))


def a_steps(tr):
    return tr.problem.steps + 1


def main(argv=None) -> int:
    a = parse(argv)
    t0 = time.perf_counter()
    lrs = [float(x) for x in np.geomspace(a.lr_min, a.lr_max, a.n_lr)]
    print(f"[momentum] he3, p=2 relu, alpha=2, reuse, T={a.steps}; beta {list(BETAS)}; eta "
          f"{[float(f'{x:.3g}') for x in lrs]}; DMFT samples={a.samples}; sim d={a.d} x "
          f"{a.seeds} seeds", flush=True)

    # part 1: the (eta, beta) diagram
    t1 = time.perf_counter()
    res, pts = run_sweep(problem(a), {"momentum": list(BETAS), "lr": lrs}, a.samples, a.seed)
    t_diag = time.perf_counter() - t1
    grid = np.array(norms(pts), dtype=object).reshape(len(BETAS), len(lrs), 3)
    print(f"\nDMFT ||m_{a.steps}|| (rows beta, columns eta; '*' > 4 SE, 'B' blow-up); "
          f"{len(pts)} points in {t_diag:.0f}s")
    rows = []
    for i, b in enumerate(BETAS):
        cells = []
        for j in range(len(lrs)):
            v, e, bad = grid[i, j]
            cells.append("B" if bad else f"{v:.3f}" + ("*" if v > 4 * e else ""))
        rows.append([f"{b:g}"] + cells)
    print_table(["beta\\eta"] + [f"{x:.3g}" for x in lrs], rows)

    # part 2: equal effective step eta/(1 - beta)
    t2 = time.perf_counter()
    eff = {}
    for b in BETAS:
        _, pb = run_sweep(problem(a, beta=b), {"lr": [x * (1.0 - b) for x in lrs]}, a.samples,
                          a.seed)
        eff[b] = norms(pb)
    t_eff = time.perf_counter() - t2
    print(f"\n||m_{a.steps}|| at equal effective step eta_eff = eta/(1 - beta) "
          f"(difference to beta = 0 in SE); {len(BETAS) * len(lrs)} points in {t_eff:.0f}s")
    rows, diffs = [], []
    for j, x in enumerate(lrs):
        row = [f"{x:.3g}"]
        v0, e0, bad0 = eff[0.0][j]
        row.append("B" if bad0 else fmt(v0, e0, 3))
        for b in BETAS[1:]:
            v, e, bad = eff[b][j]
            if bad or bad0:
                row.append("B")
                continue
            se = float(np.hypot(e, e0))
            z = (v - v0) / se
            diffs.append(dict(beta=b, lr_eff=x, lr=x * (1 - b), dmft=[v, e], dmft_plain=[v0, e0],
                              diff=v - v0, se=se, z=z))
            row.append(f"{fmt(v, e, 3)} ({z:+.1f})")
        rows.append(row)
    print_table(["eta_eff"] + [f"beta={b:g}" for b in BETAS], rows)

    # part 3: the simulator at the decisive pair
    sims = []
    sig = [d for d in diffs if abs(d["z"]) > 4]
    if sig:
        best = max(sig, key=lambda d: abs(d["diff"]))
        pair = [(best["beta"], best["lr"]), (0.0, best["lr_eff"])]
        per_seed_m = []
        for b, lr in pair:
            st, status, sec = run_sim(problem(a, lr, b), a.d, a.seeds, a.seed + 1)
            complete = status == "ok" and len(st.step) == a.steps + 1
            if complete:
                per_seed_m.append(np.asarray(st.per_seed["m"])[:, -1])
            sv, se = norm_estimate(st.m) if complete else ([np.nan], [np.nan])
            sims.append(dict(beta=b, lr=lr, sim=[float(sv[-1]), float(se[-1])], status=status,
                             seconds=sec))
            print(f"  simulation beta={b:g} eta={lr:.3g}: ||m_T|| = "
                  f"{fmt(sims[-1]['sim'][0], sims[-1]['sim'][1], 3)} ({status}, {sec:.0f}s)",
                  flush=True)
        sd = sims[0]["sim"][0] - sims[1]["sim"][0]
        sd_unpaired = float(np.hypot(sims[0]["sim"][1], sims[1]["sim"][1]))
        sd_se = paired_se(*per_seed_m) if len(per_seed_m) == 2 else float("nan")
        d_b = [d for d in diffs if d is best][0]
        z_agree = [(best["dmft"][0] - sims[0]["sim"][0]) / np.hypot(best["dmft"][1],
                                                                    sims[0]["sim"][1]),
                   (best["dmft_plain"][0] - sims[1]["sim"][0]) / np.hypot(
                       best["dmft_plain"][1], sims[1]["sim"][1])]
        confirmed = bool(np.isfinite(sd) and abs(sd) > 4 * sd_se
                         and np.sign(sd) == np.sign(d_b["diff"]))
        verdict = "CHANGES" if confirmed else "UNCONFIRMED"
        print(f"  decisive pair: DMFT difference {best['diff']:+.4f} ± {best['se']:.4f} "
              f"({best['z']:+.1f} SE); simulation {sd:+.4f} ± {sd_se:.4f} paired "
              f"({sd / sd_se:+.1f} SE; unpaired SE {sd_unpaired:.4f}); DMFT-sim z per point "
              f"{z_agree[0]:+.2f}, {z_agree[1]:+.2f}")
        sims.append(dict(difference=sd, paired_se=sd_se, unpaired_se=sd_unpaired))
    else:
        verdict = "NO CHANGE"
        z_agree, best = [], None
    print(f"VERDICT: {verdict} (momentum at equal effective step eta/(1-beta); "
          f"{len(sig)} of {len(diffs)} compared points differ by > 4 SE in the DMFT)")

    os.makedirs(a.out, exist_ok=True)
    figure(a, lrs, grid, eff, os.path.join(a.out, "momentum.png"))
    write_json(os.path.join(a.out, "momentum.json"), dict(
        setting=dict(target="he3", p=2, activation="relu", alpha=2.0, schedule="reuse",
                     steps=a.steps, samples=a.samples, d=a.d, seeds=a.seeds, seed=a.seed),
        betas=list(BETAS), lrs=lrs,
        diagram=[[list(c) for c in row] for row in grid.tolist()],
        equal_effective_step=diffs, decisive=best, simulations=sims,
        dmft_vs_sim_z=[float(z) for z in z_agree], verdict=verdict,
        seconds=dict(diagram=t_diag, equal_step=t_eff, total=time.perf_counter() - t0)))
    print(f"wrote {a.out}/momentum.png and momentum.json ({time.perf_counter() - t0:.0f}s)")
    return 0


def figure(a, lrs, grid, eff, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(12.5, 4.6), layout="constrained")
    v = np.array([[np.nan if c[2] else c[0] for c in row] for row in grid], dtype=float)
    ax = axs[0]
    # cells on index axes labelled by their values (the η grid is log-spaced)
    mesh = ax.pcolormesh(np.arange(len(lrs)), np.arange(len(BETAS)), v, shading="nearest",
                         cmap="viridis")
    ax.set_yticks(np.arange(len(BETAS)), [f"{b:g}" for b in BETAS])
    step = max(1, len(lrs) // 6)
    ax.set_xticks(np.arange(0, len(lrs), step), [f"{x:.2g}" for x in lrs[::step]])
    fig.colorbar(mesh, ax=ax, label=f"DMFT ‖m_T‖, T={a.steps}")
    e = np.array([[np.nan if c[2] else c[1] for c in row] for row in grid], dtype=float)
    ib, il = np.nonzero(v > 4 * e)
    ax.plot(il, ib, ".", color="w", ms=4, label="‖m_T‖ > 4 SE")
    ib, il = np.nonzero(np.isnan(v))
    ax.plot(il, ib, "x", color="0.35", ms=6, label="blow-up / diverged")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("momentum β")
    ax.set_title(f"he3, reuse, p=2 ReLU, α=2: DMFT ‖m_T‖ ({a.samples:,} samples)", fontsize=9)
    ax.legend(fontsize=7, loc="upper right", framealpha=0.6)
    ax = axs[1]
    for b in BETAS:
        vals = np.array([np.nan if c[2] else c[0] for c in eff[b]], dtype=float)
        errs = np.array([np.nan if c[2] else c[1] for c in eff[b]], dtype=float)
        ax.errorbar(lrs, vals, errs, marker="o", ms=3, capsize=2, label=f"β = {b:g}")
    ax.set_xscale("log")
    ax.set_xlabel("effective step η/(1 − β)")
    ax.set_ylabel(f"DMFT ‖m_T‖, T={a.steps}")
    ax.set_title("equal effective step: heavy ball against plain GD (± SE)", fontsize=9)
    ax.legend(fontsize=7)
    save_png(fig, png)
    plt.close(fig)


if __name__ == "__main__":
    sys.exit(main())
