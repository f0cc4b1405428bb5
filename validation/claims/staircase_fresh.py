"""Claim (b) of Dandi et al. 2024 (arXiv:2402.03220): the staircase is climbed one step per GD step.

Claim: for the staircase target y = z1 + z1 z2 + z1 z2 z3 (leap exponent 1), large-batch one-pass
GD (fresh batches, α = O(1)) picks up one new target direction per step: the overlap with z1
appears at step 1, with z2 at step 2 (it needs m_{:,1} ≠ 0), with z3 at step 3 (it needs
m_{:,1} m_{:,2} ≠ 0).

We report, per target direction i, the column norm ‖m_{:,i}(t)‖ (norm over the p student units)
per step, DMFT ± SE and simulation ± SE (norm of the seed-mean m, and the seed mean of the
per-seed norm, which carries the 1/√d floor), and the first step where it exceeds 4 SE.
Main case: p = 4 ReLU, a alternating, α = 4, η = 0.5, T = 6, fresh. For contrast: the same with
reuse (DMFT and simulation) and with tanh units (DMFT only).

Why z3 can stay at zero under fresh batches: with fresh data the field h_j = m_j·z + w_j is
Gaussian given the weights, and the z3 drift is E[y σ'(h_j) z3] = E[z1 z2 σ'(h_j)]
= m_j1 m_j2 E[σ'''(h_j)], which vanishes for ReLU (σ''' = δ', odd around the centred field);
likewise the z2 drift is m_j1 E[σ''(h_j)], zero for odd σ such as tanh. Batch reuse makes the
field non-Gaussian and removes these cancellations.

Usage: python validation/claims/staircase_fresh.py [--quick] [--samples N] [--d D] [--seeds S]
Writes <out>/staircase_fresh.png and <out>/staircase_fresh.json (default out: figures/claims).
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
    column_norm_estimate,
    fmt,
    per_seed_norm,
    print_table,
    run_dmft,
    run_sim,
    save_png,
    write_json,
)

import dmft  # noqa: E402


def parse(argv):
    ap = base_parser(__doc__)
    ap.add_argument("--p", type=int, default=4)
    ap.add_argument("--alpha", type=float, default=4.0)
    ap.add_argument("--lr", type=float, default=0.5)
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--out", default="figures/claims")
    ap.add_argument("--from-json", default=None, help="only redraw the figure from a saved JSON")
    a = ap.parse_args(argv)
    dflt = (dict(samples=16_000, d=200, seeds=4, steps=4) if a.quick
            else dict(samples=320_000, d=2000, seeds=16, steps=6))
    for k, v in dflt.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def first_over(v, e, thr=4.0):
    """First step t >= 1 where v_t > thr·e_t (None if never)."""
    for t in range(1, len(v)):
        if v[t] > thr * e[t]:
            return t
    return None


CASES = (  # (label, activation, schedule, simulate?)
    ("fresh, ReLU", "relu", "fresh", True),
    ("reuse, ReLU", "relu", "reuse", True),
    ("fresh, tanh", "tanh", "fresh", False),
)


def figure(a, res, png):
    """Column norms per step (t >= 1; t = 0 is 0 by construction), one panel per case."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, len(res), figsize=(5 * len(res), 4.2), layout="constrained",
                            sharey=True)
    for ax, (label, r) in zip(axs, res.items()):
        for i in range(3):
            c = f"C{i}"
            d = {k: np.asarray(v, dtype=float) for k, v in r["dmft"].items()
                 if k in ("col", "se")}
            n = len(d["col"])
            t = np.arange(1, n)
            v, e = d["col"][1:, i], d["se"][1:, i]
            ax.plot(t, v, color=c, label=f"DMFT z{i + 1}")
            ax.fill_between(t, np.maximum(v - e, 1e-4), v + e, color=c, alpha=0.2)
            if "sim" in r:
                s = {k: np.asarray(v, dtype=float) for k, v in r["sim"].items()
                     if k in ("col", "se", "seed_norm")}
                n = len(s["col"])
                t = np.arange(1, n)
                ax.errorbar(t + 0.06, s["col"][1:, i], s["se"][1:, i], fmt="o", ms=4, color=c,
                            capsize=2, label=f"sim z{i + 1}")
                ax.plot(t, s["seed_norm"][1:, i], ls=":", color=c, lw=1)
        if "sim" in r:
            ax.plot([], [], "k:", lw=1, label="sim: mean per-seed norm")
        ax.set_yscale("log")
        ax.set_ylim(1e-3, 60)
        ax.set_xlabel("GD step t")
        first = r["dmft"]["first"]
        ax.set_title(f"{label}: first step > 4 SE for z1, z2, z3 = {first}", fontsize=9)
        ax.legend(fontsize=7, loc="upper center", ncol=3)
    axs[0].set_ylabel("column norm ‖m[:, i](t)‖ over units")
    fig.suptitle(f"staircase3 = z1 + z1z2 + z1z2z3, p={a['p']}, α={a['alpha']:g}, "
                 f"η={a['lr']:g}; DMFT lines ± SE bands; sim d={a['d']}, {a['seeds']} seeds",
                 fontsize=10)
    save_png(fig, png)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse(argv)
    if a.from_json:
        import json

        with open(a.from_json) as f:
            data = json.load(f)
        png = os.path.join(a.out, "staircase_fresh.png")
        figure(data["args"], data["results"], png)
        print(f"redrew {png} from {a.from_json}")
        return 0
    t0 = time.perf_counter()
    print(f"[staircase_fresh] staircase3 = z1 + z1z2 + z1z2z3, p={a.p}, alpha={a.alpha}, "
          f"eta={a.lr}, T={a.steps}; DMFT samples={a.samples}; sim d={a.d} x {a.seeds} seeds",
          flush=True)
    res = {}
    for label, act, sch, do_sim in CASES:
        pr = dmft.make_problem("staircase3", p=a.p, activation=act, alpha=a.alpha, lr=a.lr,
                               steps=a.steps, schedule=sch)
        tr, status, sec = run_dmft(pr, a.samples, a.seed)
        cv, ce = column_norm_estimate(tr.m)
        r = dict(dmft=dict(col=cv, se=ce, status=status, seconds=sec,
                           first=[first_over(cv[:, i], ce[:, i]) for i in range(3)]))
        print(f"  DMFT {label:12s} {status} {sec:.1f}s first>4SE per direction: "
              f"{r['dmft']['first']}", flush=True)
        if do_sim:
            st, status, sec = run_sim(pr, a.d, a.seeds, a.seed + 1)
            sv, se = column_norm_estimate(st.m)
            fv, fe = per_seed_norm(st, axis=(-2,))
            r["sim"] = dict(col=sv, se=se, seed_norm=fv, seed_norm_se=fe, status=status,
                            seconds=sec,
                            first=[first_over(sv[:, i], se[:, i]) for i in range(3)])
            print(f"  SIM  {label:12s} {status} {sec:.1f}s first>4SE per direction: "
                  f"{r['sim']['first']}", flush=True)
        res[label] = r

    for label, r in res.items():
        print(f"\n{label}: column norms ||m_(:,i)(t)|| (DMFT ± SE | sim: norm of seed-mean ± SE)")
        rows = []
        for t in range(a.steps + 1):
            row = [t]
            for i in range(3):
                d = r["dmft"]
                row.append(fmt(d["col"][t, i], d["se"][t, i]) if t < len(d["col"]) else "—")
                if "sim" in r:
                    s = r["sim"]
                    row.append(fmt(s["col"][t, i], s["se"][t, i]) if t < len(s["col"]) else "—")
            rows.append(row)
        hdr = ["t"]
        for i in range(3):
            hdr += [f"DMFT z{i + 1}"] + ([f"sim z{i + 1}"] if "sim" in r else [])
        print_table(hdr, rows)
        if "sim" in r:
            fl = r["sim"]["seed_norm"][-1]
            print("  sim noise floor (seed mean of per-seed column norm) at T: "
                  + ", ".join(f"z{i + 1} {fl[i]:.4f}" for i in range(3)))

    main_r = res["fresh, ReLU"]
    want = [1, 2, 3]
    got_d = main_r["dmft"]["first"]
    got_s = main_r["sim"]["first"]
    ok_d = [g == w for g, w in zip(got_d, want)]
    ok_s = [g == w for g, w in zip(got_s, want)]
    reuse_first = res["reuse, ReLU"]["dmft"]["first"]
    tanh_first = res["fresh, tanh"]["dmft"]["first"]
    verdict = (
        f"fresh ReLU: first step > 4SE for z1,z2,z3 = DMFT {got_d}, sim {got_s} (claim: "
        f"[1, 2, 3]); reuse ReLU DMFT {reuse_first}; fresh tanh DMFT {tanh_first}"
    )
    tag = ("SUPPORTED" if all(ok_d) and all(ok_s) else
           "PARTLY SUPPORTED" if ok_d[0] and ok_d[1] else "NOT SUPPORTED")
    print(f"\nVERDICT: {tag} — {verdict}")

    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "staircase_fresh.png")
    figure(vars(a), res, png)
    write_json(os.path.join(a.out, "staircase_fresh.json"), dict(
        claim="fresh-batch GD on staircase3 learns one new direction per step (z_i at step i)",
        args=vars(a), results=res, verdict=verdict, tag=tag,
        wall_time_s=time.perf_counter() - t0))
    print(f"wrote {png} and staircase_fresh.json ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
