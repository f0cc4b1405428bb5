"""Claim: the after-step theory maps the step size, and the simulator follows it over lr.

With one giant step (η = lr·√p, n₀ = α₀d fresh samples, κ = 1, α₁ = 2, ReLU) the readout's
test error at its best λ depends on lr and α₀ through the spike strength r = lr·μ1·‖v‖ (the
spike's eigenvalue p·θ grows like p·r²) and the bulk's growth c − 1 ∝ lr²/α₀.
`dmft.features_theory` (about 0.4 s a point) maps the gain over random features,
e_rf(λ*) − e_step(λ*), on an (lr, α₀) grid for three targets, at d → ∞ and at p = d = 1000
(where a small step's spike is still shrunk by λ). The simulator then follows tanh_he3 at
α₀ = 2 over a 32-fold range of lr (d = 1000).

VERDICT: SUPPORTED when at every simulated lr the best-λ error agrees with the theory at this
p within 4 SE + 3/d.
"""

from __future__ import annotations

import os
import sys
import time

import jax

jax.config.update("jax_enable_x64", True)

import numpy as np
from _common import base_parser, fmt, print_table, save_png, write_json

from dmft.features import FeaturesConfig, features_theory, rf_test_error, simulate_features

TARGETS = ("tanh_he3", "z1_plus_he3", "staircase2")
RIDGES = tuple(float(v) for v in np.geomspace(1e-2, 10.0, 7))
K_SE = 4.0


def theory_map(target, lrs, alpha0s, d):
    """Best-λ test error after the step on the grid, at d → ∞ and at p = d, and the RF closed
    form's best."""
    err, err_p = np.empty((len(alpha0s), len(lrs))), np.empty((len(alpha0s), len(lrs)))
    for i, a0 in enumerate(alpha0s):
        for j, lr in enumerate(lrs):
            th = features_theory(FeaturesConfig(target=target, d=d, kappa=1.0, alpha0=a0,
                                                alpha1=2.0, lr=lr, ridges=RIDGES))
            err[i, j], err_p[i, j] = th.test_error.min(), th.test_error_at_p.min()
    rf = rf_test_error(1.0, 2.0, np.array(RIDGES), "relu", target)["test_error"].min()
    return err, err_p, float(rf)


def check(lrs, d, seeds, seed):
    """Simulated best-λ test error of tanh_he3 at α₀ = 2 for each lr, with the theory."""
    rows = []
    for lr in lrs:
        c = FeaturesConfig(target="tanh_he3", d=d, kappa=1.0, alpha0=2.0, alpha1=2.0, lr=lr,
                           ridges=RIDGES)
        th = features_theory(c)
        res = simulate_features(c, seeds=seeds, seed=seed, progress=False)
        st = res.per_seed["step/test_error"]
        i = int(np.argmin(st.mean(0)))
        rows.append({"lr": lr, "lambda": RIDGES[i], "sim": float(st[:, i].mean()),
                     "se": float(st[:, i].std(ddof=1) / np.sqrt(seeds)),
                     "theory_at_p": float(th.test_error_at_p[i]),
                     "theory": float(th.test_error.min())})
    return rows


def main(argv=None) -> int:
    ap = base_parser(__doc__)
    ap.add_argument("--out", default="figures/claims")
    ap.add_argument("--from-json", default=None, help="only redraw the figure from this JSON")
    args = ap.parse_args(argv)
    if args.from_json:
        import json

        with open(args.from_json) as fh:
            data = json.load(fh)
        maps = {t: {k: np.asarray(v) for k, v in m.items()} for t, m in data["maps"].items()}
        fig = _figure(np.asarray(data["lrs"]), np.asarray(data["alpha0s"]), maps,
                      data["check"], data["d"])
        save_png(fig, os.path.splitext(args.from_json)[0] + ".png")
        return 0
    d, seeds = args.d or 1000, args.seeds or 8
    lrs = np.geomspace(0.125, 8.0, 13)
    alpha0s = np.array([0.5, 1.0, 2.0, 4.0, 8.0])
    if args.quick:
        d, seeds = min(d, 96), min(seeds, 3)
        lrs, alpha0s = np.geomspace(0.25, 4.0, 5), np.array([1.0, 2.0])
    t0 = time.perf_counter()
    maps = {}
    for target in TARGETS:
        err, err_p, rf = theory_map(target, lrs, alpha0s, d)
        maps[target] = {"best_error": err, "best_error_at_p": err_p, "rf_best": rf,
                        "gain": rf - err, "gain_at_p": rf - err_p}
        i2 = int(np.argmin(np.abs(alpha0s - 2.0)))
        print(f"{target}: RF best {rf:.4f}; at α₀ = {alpha0s[i2]:g}, gain over lr "
              f"{lrs[0]:.3g}..{lrs[-1]:.3g}: d → ∞ {np.round(rf - err[i2], 4)}, at p = {d} "
              f"{np.round(rf - err_p[i2], 4)} [{time.perf_counter() - t0:.0f} s]", flush=True)
    t_theory = time.perf_counter() - t0
    check_lrs = lrs[::3] if not args.quick else lrs[::2]
    rows = check(check_lrs, d, seeds, args.seed)
    print(f"\nsimulation, tanh_he3, α₀ = 2, d = {d}, {seeds} seeds (best λ of {len(RIDGES)})")
    print_table(["lr", "λ*", "simulated", "theory at p", "theory d→∞", "z"],
                [[f"{r['lr']:.3g}", f"{r['lambda']:.3g}", fmt(r["sim"], r["se"]),
                  fmt(r["theory_at_p"]), fmt(r["theory"]),
                  f"{(r['sim'] - r['theory_at_p']) / r['se']:+.2f}"] for r in rows])
    agree = all(abs(r["sim"] - r["theory_at_p"]) < K_SE * r["se"] + 3.0 / d for r in rows)
    verdict = "SUPPORTED" if agree else "NOT SUPPORTED"
    wall = time.perf_counter() - t0
    print(f"VERDICT: {verdict} (best-λ error within {K_SE:g} SE + 3/d of the theory at p at "
          f"every lr); theory map {t_theory:.0f} s for {len(TARGETS) * lrs.size * alpha0s.size} "
          f"points, total {wall:.0f} s")
    name = "giant_step_theory_map" + ("_quick" if args.quick else "")
    write_json(os.path.join(args.out, name + ".json"), {
        "lrs": lrs, "alpha0s": alpha0s, "ridges": RIDGES, "maps": maps, "check": rows, "d": d,
        "seeds": seeds, "verdict": verdict, "wall_time_s": wall, "theory_time_s": t_theory})
    save_png(_figure(lrs, alpha0s, maps, rows, d), os.path.join(args.out, name + ".png"))
    return 0


def _figure(lrs, alpha0s, maps, rows, d):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from matplotlib.ticker import LogLocator, NullFormatter

    fig, axes = plt.subplots(1, len(TARGETS) + 1, figsize=(15, 3.6), layout="constrained")
    for ax, target in zip(axes, TARGETS, strict=False):
        for i, a0 in enumerate(alpha0s):
            line, = ax.plot(lrs, maps[target]["gain"][i], marker=".", label=f"α₀ = {a0:g}")
            ax.plot(lrs, maps[target]["gain_at_p"][i], ls=":", color=line.get_color())
        ax.axhline(0.0, color="0.5", lw=0.8)
        ax.set_xscale("log")
        ax.set_xlabel("lr (η = lr·√p)")
        ax.set_title(f"{target}: gain over RF\n(theory d → ∞; dotted: p = {d})", fontsize=9)
    axes[0].set_ylabel("e_rf(λ*) − e_step(λ*)")
    axes[0].legend(fontsize=7, frameon=False)
    ax = axes[-1]
    lr = [r["lr"] for r in rows]
    ax.errorbar(lr, [r["sim"] for r in rows], yerr=[r["se"] for r in rows], fmt="o",
                label=f"simulation d={d}")
    ax.plot(lr, [r["theory_at_p"] for r in rows], "s--", mfc="none", label="theory at p")
    ax.plot(lr, [r["theory"] for r in rows], "-", label="theory d → ∞")
    ax.set_xscale("log")
    ax.set_xlabel("lr")
    ax.set_ylabel("best-λ test error")
    ax.set_title("tanh_he3, α₀ = 2:\nsimulation against the theory", fontsize=9)
    ax.legend(fontsize=7, frameon=False)
    for ax in axes:
        ax.xaxis.set_major_locator(LogLocator(base=2.0))
        ax.xaxis.set_minor_formatter(NullFormatter())
        ax.xaxis.set_major_formatter(lambda v, _: f"{v:g}")
    return fig


if __name__ == "__main__":
    sys.exit(main())
