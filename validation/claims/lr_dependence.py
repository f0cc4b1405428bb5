"""Claim (c) of Dandi et al. 2024 (arXiv:2402.03220): the benefit of reuse needs a finite step size.

Claim: the overlap gained by reusing a batch comes from the finite learning rate (gradient flow
and small η behave like one-pass GD, stuck at m = 0 for an information exponent > 1), so with each
fresh batch used twice (`repeat:2`) the overlap with he3 should switch on only above some η.

he3, p = 2 ReLU, a = (1, −1)/√2, α = 2, schedule repeat:2, T = 6: ‖m_t‖ after t = 2, 4, 6 over a
log grid of η (DMFT ± SE; a run that diverges or blows up (mean diag Q > 100) is marked, and so
are the larger η), simulation at a few η. Then a per-step schedule: η_1 on the first use of each
batch and η_2 on its repetition. All DMFT runs (the grid, the simulated η, the per-step schedules)
are one ``dmft.sweep`` over the per-step learning rate: one compilation, common random numbers.

Usage: python validation/claims/lr_dependence.py [--quick] [--samples N] [--d D] [--seeds S]
Writes <out>/lr_dependence.png and <out>/lr_dependence.json (default out: figures/claims).
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
    per_seed_norm,
    print_table,
    run_sim,
    run_sweep,
    save_png,
    write_json,
)

import dmft  # noqa: E402


def parse(argv):
    ap = base_parser(__doc__)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--n-lr", type=int, default=None, help="points of the log grid of η")
    ap.add_argument("--lr-min", type=float, default=0.05)
    ap.add_argument("--lr-max", type=float, default=5.0)
    ap.add_argument("--sim-lrs", type=str, default=None, help="η values simulated")
    ap.add_argument("--split-lrs", type=str, default=None,
                    help="η_2 on the repeated steps (η_1 = --split-base on first uses)")
    ap.add_argument("--split-base", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default="figures/claims")
    ap.add_argument("--from-json", default=None, help="only redraw the figure from a saved JSON")
    a = ap.parse_args(argv)
    dflt = (dict(samples=16_000, d=200, seeds=4, n_lr=4, sim_lrs="1", split_lrs="2") if a.quick
            else dict(samples=240_000, d=2000, seeds=16, n_lr=10, sim_lrs="0.5,1,2",
                      split_lrs="0.25,1,2"))
    for k, v in dflt.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.sim_lrs = [float(x) for x in a.sim_lrs.split(",") if x]
    a.split_lrs = [float(x) for x in a.split_lrs.split(",") if x]
    return a


def problem(a, lr):
    return dmft.make_problem("he3", p=2, activation="relu", alpha=a.alpha, lr=lr,
                             steps=a.steps, schedule="repeat:2")


def at(r, t, key="norm", ekey="se"):
    return fmt(r[key][t], r[ekey][t]) if t < len(r[key]) else "—"


def figure(a, grid, sims, bad, png):
    """‖m_t‖ and its significance against η (t = 2, 4, 6)."""
    grid = {float(k): {kk: (np.asarray(vv, dtype=float) if kk in ("norm", "se") else vv)
                       for kk, vv in v.items()} for k, v in grid.items()}
    sims = {float(k): {kk: np.asarray(vv, dtype=float) if kk in ("norm", "se") else vv
                       for kk, vv in v.items()} for k, v in sims.items()}
    ts = [t for t in (2, 4, 6) if t <= a["steps"]]
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 2, figsize=(11, 4.2), layout="constrained")
    ax = axs[0]
    for j, t in enumerate(ts):
        x = [lr for lr, r in grid.items() if "norm" in r and t < len(r["norm"])]
        y = np.array([grid[lr]["norm"][t] for lr in x])
        e = np.array([grid[lr]["se"][t] for lr in x])
        ax.errorbar(x, y, e, fmt="-o", ms=3, color=f"C{j}", capsize=2, label=f"DMFT t={t}")
        xb = [lr for lr in x if grid[lr]["blowup"]]
        if xb:
            ax.plot(xb, [grid[lr]["norm"][t] for lr in xb], "x", color="k", ms=8)
        xs = [lr for lr, s in sims.items() if t < len(s["norm"])]
        ax.errorbar(np.array(xs) * 1.04, [sims[lr]["norm"][t] for lr in xs],
                    [sims[lr]["se"][t] for lr in xs], fmt="s", mfc="none", ms=6,
                    color=f"C{j}", capsize=2, label=f"sim t={t}")
    ax.plot([], [], "x", color="k", label="blow-up (mean Q_jj > 100)")
    for lr in bad:  # diverged or skipped: dotted line
        if "norm" not in grid[lr] or grid[lr]["status"] != "ok":
            ax.axvline(lr, color="0.6", ls=":", lw=1)
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_ylim(5e-4, None)
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("‖m_t‖")
    ax.set_title(f"he3, repeat:2, p=2 ReLU, α={a['alpha']:g} (sim d={a['d']}, {a['seeds']} seeds)")
    ax.legend(fontsize=7, ncol=2, loc="upper left")
    ax = axs[1]
    for j, t in enumerate(ts):
        x = [lr for lr, r in grid.items() if "norm" in r and t < len(r["norm"])]
        z = [grid[lr]["norm"][t] / max(grid[lr]["se"][t], 1e-300) for lr in x]
        ax.plot(x, z, "-o", ms=3, color=f"C{j}", label=f"t={t}")
    ax.axhline(4, color="k", ls="--", lw=0.8, label="4 SE")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("learning rate η")
    ax.set_ylabel("DMFT ‖m_t‖ / SE")
    ax.set_title("significance of the overlap")
    ax.legend(fontsize=7)
    save_png(fig, png)
    plt.close(fig)
    save_png(fig, png)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse(argv)
    if a.from_json:
        import json

        with open(a.from_json) as f:
            data = json.load(f)
        bad = [float(k) for k, v in data["grid"].items()
               if "norm" not in v or v["status"] != "ok" or v["blowup"]]
        png = os.path.join(a.out, "lr_dependence.png")
        figure(data["args"], data["grid"], data["sims"], bad, png)
        print(f"redrew {png} from {a.from_json}")
        return 0
    t0 = time.perf_counter()
    lrs = [float(f"{x:.3g}") for x in np.geomspace(a.lr_min, a.lr_max, a.n_lr)]
    print(f"[lr_dependence] he3, repeat:2, alpha={a.alpha}, T={a.steps}, eta grid {lrs}; DMFT "
          f"samples={a.samples}; sim d={a.d} x {a.seeds} seeds at eta={a.sim_lrs}", flush=True)
    # The DMFT of the whole study in one dmft.sweep (one compilation, same seed at every
    # point): the η grid, the simulated η off the grid and the split schedules are all values of
    # the per-step learning rate lr (shape (T,)).
    extra = [lr for lr in a.sim_lrs if lr not in lrs]
    splits = [np.array([a.split_base if t % 2 == 0 else lr2 for t in range(a.steps)])
              for lr2 in a.split_lrs]
    values = [np.full(a.steps, lr) for lr in lrs + extra] + splits
    _, runs = run_sweep(problem(a, lrs[0]), {"lr": values}, a.samples, a.seed)
    print(f"  DMFT sweep of {len(values)} learning-rate schedules: "
          f"{sum(r[2] for r in runs):.1f}s", flush=True)
    grid = {}
    stopped = None
    for lr, (tr, status, sec) in zip(lrs, runs[:len(lrs)], strict=True):
        v, e = norm_estimate(tr.m)
        bu = blowup(tr)
        grid[lr] = dict(norm=v, se=e, status=status, blowup=bu, seconds=sec,
                        Qdiag=np.einsum("tii->t", tr.Q.value) / 2)
        if stopped is not None:  # the loop used to skip these; the sweep has them anyway
            grid[lr]["status"] = f"{status} (beyond the blow-up at eta={stopped:g})"
        print(f"  DMFT eta={lr:<6g} {status:18s} |m_T|={fmt(v[-1], e[-1])} "
              f"blow-up={bu}", flush=True)
        if stopped is None and (status != "ok" or bu):
            stopped = lr
    sims = {}
    for lr in a.sim_lrs:
        st, status, sec = run_sim(problem(a, lr), a.d, a.seeds, a.seed + 1)
        v, e = norm_estimate(st.m)
        fv, fe = per_seed_norm(st)
        sims[lr] = dict(norm=v, se=e, seed_norm=fv, seed_norm_se=fe, status=status, seconds=sec)
        print(f"  SIM  eta={lr:<6g} {status:18s} {sec:5.1f}s |mean m_T|={fmt(v[-1], e[-1])} "
              f"mean|m_T|={fmt(fv[-1], fe[-1])}", flush=True)
    sims_dmft = {}
    for lr, (tr, status, sec) in zip(extra, runs[len(lrs):len(lrs) + len(extra)], strict=True):
        v, e = norm_estimate(tr.m)  # DMFT at the simulated η not on the grid
        sims_dmft[lr] = dict(norm=v, se=e, status=status, blowup=blowup(tr), seconds=sec)
    split = {}
    for lr2, lr_arr, (tr, status, sec) in zip(a.split_lrs, splits, runs[len(lrs) + len(extra):],
                                              strict=True):
        v, e = norm_estimate(tr.m)
        split[lr2] = dict(lr=lr_arr, norm=v, se=e, status=status, blowup=blowup(tr), seconds=sec)
        print(f"  DMFT split eta1={a.split_base:g} eta2={lr2:g} {status} |m_T|="
              f"{fmt(v[-1], e[-1])}", flush=True)

    ts = [t for t in (2, 4, 6) if t <= a.steps]
    print("\nDMFT ||m_t|| ± SE, repeat:2 on he3 ('*' = above 4 SE)")
    rows = []
    for lr, r in grid.items():
        if "norm" not in r:
            rows.append([f"{lr:g}"] + ["—"] * len(ts) + [r["status"]])
            continue
        cells = []
        for t in ts:
            c = at(r, t)
            if t < len(r["norm"]) and r["norm"][t] > 4 * r["se"][t]:
                c += "*"
            cells.append(c)
        note = r["status"] + (", BLOW-UP (Q>100)" if r["blowup"] else "")
        note += f", Q_T={r['Qdiag'][-1]:.3g}" if len(r["Qdiag"]) else ""
        rows.append([f"{lr:g}"] + cells + [note])
    print_table(["eta"] + [f"t={t}" for t in ts] + ["status"], rows)

    print("\nsimulation (norm of seed-mean m ± SE; floor = seed mean of per-seed norm) vs DMFT")
    rows = []
    for lr, s in sims.items():
        d = grid.get(lr) if lr in grid and "norm" in grid.get(lr, {}) else sims_dmft.get(lr)
        for t in ts:
            rows.append([f"{lr:g}", t, at(d, t) if d else "—", at(s, t),
                         at(s, t, "seed_norm", "seed_norm_se")])
    print_table(["eta", "t", "DMFT", "sim", "sim floor"], rows)

    print(f"\nper-step schedule: eta1={a.split_base:g} on first use, eta2 on the repeat")
    rows = [[f"{lr2:g}"] + [at(r, t) for t in ts] + [r["status"] + (", blow-up" if r["blowup"]
                                                                       else "")]
            for lr2, r in split.items()]
    print_table(["eta2"] + [f"t={t}" for t in ts] + ["status"], rows)

    T = a.steps
    on = [lr for lr, r in grid.items()
          if "norm" in r and len(r["norm"]) == T + 1 and not r["blowup"]
          and r["status"] == "ok" and r["norm"][T] > 4 * r["se"][T]]
    off = [lr for lr, r in grid.items()
           if "norm" in r and len(r["norm"]) == T + 1 and not r["blowup"]
           and r["status"] == "ok" and r["norm"][T] <= 4 * r["se"][T]]
    bad = [lr for lr, r in grid.items() if "norm" not in r or r["status"] != "ok" or r["blowup"]]
    onset = min(on) if on else None
    below = max([x for x in off if onset is None or x < onset], default=None)
    where = f"onset between {below} and {onset}" if on else "no onset on this grid"
    verdict = (f"repeat:2 he3: ||m_{T}|| > 4SE for eta in {on or 'none'}; {where}; "
               f"no significant overlap for eta in {off}; diverged/blew up/skipped: {bad}")
    tag = "SUPPORTED" if on and off and min(off) < onset else ("NOT SUPPORTED" if not on else
                                                               "INCONCLUSIVE")
    print(f"\nVERDICT: {tag} (claim: learning switches on at finite eta) — {verdict}")

    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "lr_dependence.png")
    figure(vars(a), grid, sims, bad, png)
    write_json(os.path.join(a.out, "lr_dependence.json"), dict(
        claim="repeat:2 on he3 gives an overlap only above a finite learning rate",
        args=vars(a), lrs=lrs, grid=grid, sims=sims, sims_dmft=sims_dmft, split=split,
        onset=onset, below_onset=below, verdict=verdict, tag=tag,
        wall_time_s=time.perf_counter() - t0))
    print(f"wrote {png} and lr_dependence.json ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
