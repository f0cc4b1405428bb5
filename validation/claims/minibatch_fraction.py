"""Mini-batch fraction at equal sample visits: the overlap with the he3 direction (issue 12).

Question: at an equal number of sample visits (epochs), how does the overlap ‖m‖ with the he3
direction depend on the mini-batch fraction b ∈ {1, 1/2, 1/4, 1/8}? Schedule `epochs:B`
(B = 1/b: every epoch visits each sample exactly once, in B disjoint mini-batches, mini-batch
sums rescaled by 1/b), so E epochs are T = E/b steps. Two learning-rate families:

- fixed η (``--lr``, default 0.5) for every b;
- η·b fixed (as the issue asks): η(b) = ``--lr-b`` / b (default η·b = 0.0625, i.e.
  η = 0.0625, 0.125, 0.25, 0.5 for b = 1, 1/2, 1/4, 1/8). With the 1/b rescaling of the
  mini-batch sum, a visited sample moves the weights by η/b = η·b/b², so this family makes
  the per-visit step grow as 1/b²;
- η/b fixed (``--lr-over-b``, default 0.5: η = 0.5, 0.25, 0.125, 0.0625): the same step per
  sample visit and the same total GD time Σ_t η_t = E·η/b at equal epochs for every b, which
  isolates the mini-batch noise (this is "η·b fixed" for the un-rescaled mini-batch sum).

he3, p = 2 ReLU, a = (1, −1)/√2, α = 2, m_0 = 0. DMFT only (± SE over 16 replicas); the
mini-batch DMFT itself is validated against the simulator in validation/validate.py
(tanh_he3_sgd, tanh_he3_epochs, he3_sgd). Prints ‖m‖ at the end of each epoch and a VERDICT
line, writes <out>/minibatch_fraction.{png,json} (default out: figures/claims).

Usage: python validation/claims/minibatch_fraction.py [--quick] [--samples N] [--epochs E]
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
    save_png,
    write_json,
)

import dmft  # noqa: E402

FRACTIONS = (1, 2, 4, 8)  # B = 1/b
FAMILIES = ("fixed_lr", "fixed_lr_b", "fixed_lr_over_b")


def family_lr(a, family, B):
    return {"fixed_lr": a.lr, "fixed_lr_b": a.lr_b * B, "fixed_lr_over_b": a.lr_over_b / B}[family]


def parse(argv):
    ap = base_parser(__doc__)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--epochs", type=int, default=4)
    ap.add_argument("--lr", type=float, default=0.5, help="η of the fixed-η family")
    ap.add_argument("--lr-b", type=float, default=0.0625, help="η·b of the fixed-η·b family")
    ap.add_argument("--lr-over-b", type=float, default=0.5, help="η/b of the fixed-η/b family")
    ap.add_argument("--out", default="figures/claims")
    a = ap.parse_args(argv)
    if a.samples is None:
        a.samples = 16_000 if a.quick else 160_000
    if a.quick:
        a.epochs = min(a.epochs, 2)
    return a


def study(a):
    runs = {}
    for B in FRACTIONS:  # one compile per B (η is a traced number)
        for family in FAMILIES:
            lr = family_lr(a, family, B)
            pr = dmft.make_problem("he3", p=2, activation="relu", alpha=a.alpha, lr=lr,
                                   steps=a.epochs * B, schedule=f"epochs:{B}")
            traj, status, sec = run_dmft(pr, a.samples, a.seed)
            nm, se = norm_estimate(traj.m)
            ends = np.arange(0, len(nm), B)  # t = e B: the end of epoch e
            runs[(family, B)] = dict(lr=lr, status=status, seconds=sec, blowup=blowup(traj),
                                     epoch=(ends // B).tolist(), norm=nm[ends].tolist(),
                                     se=se[ends].tolist(), norm_all=nm.tolist(),
                                     se_all=se.tolist(), test_error=traj.test_error.value.tolist())
            print(f"  {family} b=1/{B} η={lr:g}: {status}, {sec:.0f} s", flush=True)
    return runs


def verdict(runs, a):
    lines = []
    for family in FAMILIES:
        fin = [(B, runs[(family, B)]["norm"][-1], runs[(family, B)]["se"][-1]) for B in FRACTIONS
               if len(runs[(family, B)]["norm"]) == a.epochs + 1]
        if len(fin) < 2:
            lines.append(f"{family}: too few completed runs")
            continue
        best = max(fin, key=lambda x: x[1])
        full = fin[0]
        diff = best[1] - full[1]
        sig = diff / np.hypot(best[2], full[2])
        lines.append(f"{family}: largest ‖m‖ after {a.epochs} epochs at b=1/{best[0]} "
                     f"({best[1]:.4f}±{best[2]:.4f}; vs b=1: {full[1]:.4f}±{full[2]:.4f}, "
                     f"{sig:.1f} SE)")
    return lines


def figure(runs, a, path):
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(14, 4))
    for ax, family, title in zip(axes, FAMILIES,
                                 (f"fixed η = {a.lr:g}", f"fixed η·b = {a.lr_b:g}",
                                  f"fixed η/b = {a.lr_over_b:g} (equal GD time)")):
        for B in FRACTIONS:
            r = runs[(family, B)]
            x = np.arange(len(r["norm_all"])) / B
            v, e = np.asarray(r["norm_all"]), np.asarray(r["se_all"])
            if r["blowup"]:
                keep = np.nonzero(np.isfinite(v) & (v < 1.0))[0]
                x, v, e = x[keep], v[keep], e[keep]
            line, = ax.plot(x, v, label=f"b = 1/{B} (η = {r['lr']:g})")
            ax.fill_between(x, v - e, v + e, color=line.get_color(), alpha=0.25)
        ax.set_xlabel("epochs (sample visits per sample)")
        ax.set_title(title)
        ax.legend(fontsize=8)
    axes[0].set_ylabel("‖m‖ (overlap with the he3 direction), DMFT ± SE")
    fig.suptitle(f"he3, p = 2 ReLU, α = {a.alpha:g}, epochs:B schedules")
    fig.tight_layout()
    return save_png(fig, path)


def main(argv=None) -> int:
    a = parse(argv)
    t0 = time.perf_counter()
    runs = study(a)
    header = ["family", "b", "η"] + [f"e={e}" for e in range(a.epochs + 1)]
    rows = []
    for (family, B), r in sorted(runs.items(), key=lambda kv: FAMILIES.index(kv[0][0])):
        cells = [fmt(v, s, 3) for v, s in zip(r["norm"], r["se"])]
        rows.append([family, f"1/{B}", f"{r['lr']:g}"] + cells
                    + ["—"] * (a.epochs + 1 - len(cells)))
    print_table(header, rows)
    lines = verdict(runs, a)
    for ln in lines:
        print("VERDICT " + ln)
    os.makedirs(a.out, exist_ok=True)
    png = figure(runs, a, os.path.join(a.out, "minibatch_fraction.png"))
    js = write_json(os.path.join(a.out, "minibatch_fraction.json"),
                    dict(args=vars(a), runs={f"{f}/1/{B}": r for (f, B), r in runs.items()},
                         verdict=lines, seconds=time.perf_counter() - t0))
    print(f"wrote {png} and {js}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
