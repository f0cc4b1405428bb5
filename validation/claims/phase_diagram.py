"""Phase diagram (η, α) of the overlap ‖m_T‖ reached by reusing batches (Dandi et al. 2024).

Where in the (learning rate η, sample ratio α = n/d) plane does GD that reuses its data learn
he3 (information exponent 3) from m_0 = 0 within T = 6 steps? p = 2 ReLU units, a = (1, −1)/√2,
two schedules: ``repeat:2`` (each fresh batch used for two consecutive steps) and ``reuse`` (one
batch for all steps). The DMFT of each schedule is one ``dmft.sweep`` over the outer product of a
log grid of η and a log grid of α (one compilation; every point uses the same seed, so
neighbouring points share their Monte Carlo noise). ‖m_T‖ ± SE as in the other claims studies
(conservative SE = √(Σ_ij SE_ij²)); "learned" means ‖m_T‖ > 4 SE; a point whose mean diag Q
exceeds 100 (or that diverges) is a blow-up and is left blank in the heat map.

The simulator is run at three points of each diagram, picked from the DMFT: "learned" (the
largest ‖m_T‖/SE without blow-up), "not learned" (the smallest ‖m_T‖ below 4 SE) and
"boundary" (‖m_T‖/SE closest to 4). VERDICT: |z| = |DMFT − sim| / √(SE_DMFT² + SE_sim²) at
every simulated point.

Usage: python validation/claims/phase_diagram.py [--quick] [--samples N] [--d D] [--seeds S]
Writes <out>/phase_diagram.png and <out>/phase_diagram.json (default out: figures/claims).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import dataclasses  # noqa: E402
import os  # noqa: E402
import sys  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402

import numpy as np  # noqa: E402

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    base_parser,
    blowup,
    fmt,
    norm_estimate,
    per_seed_norm,
    print_table,
    run_sim,
    save_png,
    write_json,
)

import dmft  # noqa: E402
from dmft import Estimate  # noqa: E402

SCHEDULES = ("repeat:2", "reuse")


def parse(argv):
    ap = base_parser(__doc__)
    ap.add_argument("--n-lr", type=int, default=None, help="points of the log grid of η")
    ap.add_argument("--lr-min", type=float, default=0.1)
    ap.add_argument("--lr-max", type=float, default=4.0)
    ap.add_argument("--n-alpha", type=int, default=None, help="points of the log grid of α")
    ap.add_argument("--alpha-min", type=float, default=0.5)
    ap.add_argument("--alpha-max", type=float, default=4.0)
    ap.add_argument("--steps", type=int, default=6)
    ap.add_argument("--out", default="figures/claims")
    a = ap.parse_args(argv)
    dflt = (dict(samples=8_000, d=200, seeds=4, n_lr=4, n_alpha=3) if a.quick
            else dict(samples=100_000, d=1500, seeds=12, n_lr=16, n_alpha=6))
    for k, v in dflt.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    return a


def problem(a, schedule, lr=1.0, alpha=2.0):
    return dmft.make_problem("he3", p=2, activation="relu", alpha=alpha, lr=lr,
                             steps=a.steps, schedule=schedule)


def analyse(res):
    """Per grid point (α, η): ‖m_t‖ and SE over t, blow-up flag, mean diag Q_T."""
    v, e = norm_estimate(res.m)  # (n_alpha, n_lr, T+1), NaN after a divergence
    q = np.asarray(res.Q.value)
    qdiag = np.einsum("...tii->...t", q) / q.shape[-1]
    bu = np.zeros(res.shape, dtype=bool)
    for idx in np.ndindex(res.shape):
        bu[idx] = res.status[idx] != "ok" or blowup(res.point(*idx))
    return v, e, bu, qdiag


def pick_points(v, e, bu):
    """Grid indices of the 'learned', 'not learned' and 'boundary' points (valid points only)."""
    z = np.where(bu, np.nan, v[..., -1] / np.maximum(e[..., -1], 1e-300))
    learned = np.unravel_index(np.nanargmax(z), z.shape)
    # not learned: the smallest ‖m_T‖ among the points below 4 SE (the smallest z would pick a
    # noisy point next to the blow-up, a weak test)
    not_learned = np.unravel_index(np.nanargmin(np.where(z < 4, v[..., -1], np.nan)), z.shape)
    zb = np.abs(z - 4.0)
    zb[learned], zb[not_learned] = np.nan, np.nan
    boundary = np.unravel_index(np.nanargmin(zb), z.shape)
    return {"learned": learned, "not learned": not_learned, "boundary": boundary}


def masked(res, bu):
    """The sweep with blown-up points set to NaN (so they do not swamp the colour scale)."""
    v = np.array(res.m.value, dtype=float)
    v[bu] = np.nan
    return dataclasses.replace(res, m=Estimate(v, np.asarray(res.m.error)))


def figure(a, results, analysed, sims, png):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from dmft.plot import plot_sweep

    fig, axs = plt.subplots(1, 2, figsize=(12.5, 4.6), layout="constrained")
    for ax, sch in zip(axs, SCHEDULES, strict=True):
        res = results[sch]
        v, e, bu, _ = analysed[sch]
        pts = [({"alpha": s["alpha"], "lr": s["lr"]}, Estimate(s["sim"][0], s["sim"][1]))
               for s in sims if s["schedule"] == sch]
        plot_sweep(masked(res, bu), "m_norm", ax=ax, sims=pts)
        # colour scale: up to the largest significant ‖m_T‖ + SE; the noisy large values next to
        # the blow-up (not significant) saturate instead of washing out the map
        sig = ~bu & (v[..., -1] > 4 * e[..., -1])
        if np.any(sig):
            ax.collections[0].set_clim(0.0, float(np.max((v[..., -1] + e[..., -1])[sig])))
        alphas, lrs = res.coords
        ia, il = np.nonzero(bu)
        ax.plot(lrs[il], alphas[ia], "x", color="0.35", ms=6, label="blow-up / diverged")
        ia, il = np.nonzero(~bu & (v[..., -1] > 4 * e[..., -1]))
        ax.plot(lrs[il], alphas[ia], ".", color="w", ms=3, label="‖m_T‖ > 4 SE")
        ax.set_xlabel("learning rate η")
        ax.set_ylabel("α = n/d")
        ax.set_title(f"he3, {sch}, p=2 ReLU, T={a.steps}: DMFT ‖m_T‖ ({a.samples:,} samples)\n"
                     f"squares: simulation d={a.d}, {a.seeds} seeds; colours capped at the "
                     "largest significant value", fontsize=8)
        ax.legend(fontsize=7, loc="upper right", framealpha=0.6)
    save_png(fig, png)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse(argv)
    t0 = time.perf_counter()
    # exact log grids (plot_sweep draws log-spaced axes on a log scale); printed to 3 digits
    lrs = [float(x) for x in np.geomspace(a.lr_min, a.lr_max, a.n_lr)]
    alphas = [float(x) for x in np.geomspace(a.alpha_min, a.alpha_max, a.n_alpha)]
    print(f"[phase_diagram] he3, p=2 relu, T={a.steps}, schedules {SCHEDULES}; eta "
          f"{[float(f'{x:.3g}') for x in lrs]}; alpha {[float(f'{x:.3g}') for x in alphas]}; "
          f"DMFT samples={a.samples}; sim d={a.d} x {a.seeds} seeds", flush=True)
    results, analysed, timing = {}, {}, {}
    for sch in SCHEDULES:
        t1 = time.perf_counter()
        with warnings.catch_warnings():  # diverged points: NaN, reported below
            warnings.simplefilter("ignore", RuntimeWarning)
            res = dmft.sweep(problem(a, sch), over={"alpha": alphas, "lr": lrs},
                             samples=a.samples, seed=a.seed, progress=False)
        timing[sch] = time.perf_counter() - t1
        results[sch], analysed[sch] = res, analyse(res)
        v, e, bu, _ = analysed[sch]
        ok = ~bu
        print(f"  DMFT sweep {sch}: {res.shape[0]}x{res.shape[1]} points in {timing[sch]:.0f}s "
              f"(grid batch {res.settings['grid_batch']}); SE of ||m_T|| "
              f"{np.nanmin(e[..., -1][ok]):.4f}..{np.nanmax(e[..., -1][ok]):.4f} "
              f"(points without blow-up); {int(bu.sum())} blow-ups", flush=True)

    for sch in SCHEDULES:
        v, e, bu, _ = analysed[sch]
        print(f"\nDMFT ||m_{a.steps}||, he3, {sch} (rows alpha, columns eta; '*' > 4 SE, "
              "'B' blow-up)")
        rows = []
        for i, al in enumerate(alphas):
            cells = []
            for j in range(len(lrs)):
                if bu[i, j]:
                    cells.append("B")
                else:
                    cells.append(f"{v[i, j, -1]:.3f}" + ("*" if v[i, j, -1] > 4 * e[i, j, -1]
                                                          else ""))
            rows.append([f"{al:.3g}"] + cells)
        print_table(["alpha\\eta"] + [f"{lr:.3g}" for lr in lrs], rows)

    sims = []
    for sch in SCHEDULES:
        v, e, bu, _ = analysed[sch]
        for kind, (i, j) in pick_points(v, e, bu).items():
            lr, al = lrs[j], alphas[i]
            st, status, sec = run_sim(problem(a, sch, lr, al), a.d, a.seeds, a.seed + 1)
            sv, se = norm_estimate(st.m)
            fv, fe = per_seed_norm(st)
            dv, de = float(v[i, j, -1]), float(e[i, j, -1])
            complete = status == "ok" and len(sv) == a.steps + 1
            sim_t = (float(sv[-1]), float(se[-1])) if complete else (float("nan"),) * 2
            z = (dv - sim_t[0]) / float(np.hypot(de, sim_t[1]))
            sims.append(dict(schedule=sch, kind=kind, alpha=al, lr=lr, index=[int(i), int(j)],
                             dmft=[dv, de], sim=list(sim_t), z=z, status=status, seconds=sec,
                             sim_norm=sv, sim_se=se, sim_seed_norm=fv, sim_seed_norm_se=fe,
                             dmft_norm=v[i, j], dmft_se=e[i, j]))
            print(f"  SIM {sch:8s} {kind:11s} alpha={al:<5.3g} eta={lr:<6.3g} {status} {sec:5.1f}s "
                  f"||m_T|| DMFT {fmt(dv, de)} sim {fmt(*sim_t)} z={z:+.2f}", flush=True)

    print("\nsimulator (norm of seed-mean m ± SE) vs DMFT at t = T")
    print_table(["schedule", "point", "alpha", "eta", "DMFT", "sim", "sim floor", "z"],
                [[s["schedule"], s["kind"], f"{s['alpha']:.3g}", f"{s['lr']:.3g}", fmt(*s["dmft"]),
                  fmt(*s["sim"]), fmt(s["sim_seed_norm"][-1], s["sim_seed_norm_se"][-1]),
                  f"{s['z']:+.2f}"] for s in sims])
    zs = np.array([abs(s["z"]) for s in sims])
    worst = float(np.nanmax(zs)) if np.any(np.isfinite(zs)) else float("nan")
    agree = bool(np.all(zs < 3))
    summary = {sch: dict(learned=int(np.sum(~analysed[sch][2] & (analysed[sch][0][..., -1]
                                                                > 4 * analysed[sch][1][..., -1]))),
                         blowup=int(np.sum(analysed[sch][2])), points=int(analysed[sch][2].size))
               for sch in SCHEDULES}
    verdict = (f"simulator vs DMFT at {len(sims)} points (learned / not learned / boundary of "
               f"each schedule): max |z| = {worst:.2f} "
               f"({'all < 3: AGREE' if agree else 'some >= 3: DISAGREE'}); "
               + "; ".join(f"{sch}: learned (>4 SE) at {s['learned']}/{s['points']} points, "
                           f"blow-up at {s['blowup']}" for sch, s in summary.items()))
    print(f"\nVERDICT: {'AGREE' if agree else 'DISAGREE'} — {verdict}")

    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "phase_diagram.png")
    figure(a, results, analysed, sims, png)
    dm = {}
    for sch in SCHEDULES:
        v, e, bu, qd = analysed[sch]
        res = results[sch]
        dm[sch] = dict(norm=v, se=e, blowup=bu, Qdiag=qd, status=res.status,
                       first_bad_step=res.first_bad_step, seconds=timing[sch],
                       grid_batch=res.settings["grid_batch"])
    write_json(os.path.join(a.out, "phase_diagram.json"), dict(
        study="(eta, alpha) phase diagram of ||m_T|| for he3, p=2 relu, repeat:2 and reuse",
        args=vars(a), alphas=alphas, lrs=lrs, axes=["alpha", "lr", "step"], dmft=dm, sims=sims,
        summary=summary, max_abs_z=worst, agree=agree, verdict=verdict,
        wall_time_s=time.perf_counter() - t0))
    print(f"wrote {png} and phase_diagram.json ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
