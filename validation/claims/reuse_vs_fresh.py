"""Claim (a) of Dandi et al. 2024 (arXiv:2402.03220): reusing batches breaks the information
exponent.

Claim: one-pass GD with fresh batches at α = n/d = O(1) cannot leave m_0 = 0 in finitely many steps
for a target with information exponent > 1 (he3: the drift −ηα E[g h*] vanishes at m = 0, so the
DMFT keeps m_t = 0 up to Monte Carlo noise and the finite-d simulation shows only |m| ~ 1/√d),
whereas GD that reuses its batch acquires an overlap with the target within a few steps (the paper:
"in just two time steps"), for every target that is not protected by a symmetry; "hard"
symmetric targets (even ones, z1 z2 z3, sign(z1 z2 z3)) stay at m = 0 from m_0 = 0.

Part 1: he3, p = 2 ReLU units, a = (1, −1)/√2, α = 2, T = 10, η over a list; DMFT (± SE) and
simulation (± SE over seeds) of ‖m_t‖ for reuse and fresh, the simulation's noise floor (seed mean
of the per-seed ‖m_t‖ with fresh batches), and a blow-up check (mean diag Q > 100).
Part 2: every shipped target with reuse and fresh at one (α, η, T) from m_0 = 0 (DMFT, plus a
reuse simulation at smaller d); for targets not learned from m_0 = 0 the run from m_0 = 0.05 is
shown too. The DMFT runs are ``dmft.sweep`` calls (one compilation each, common random numbers):
part 1 one η sweep per schedule, part 2 one m_0 ∈ {0, 0.05} sweep per target and schedule (the
target and the schedule are structural, so they stay loops).

Usage: python validation/claims/reuse_vs_fresh.py [--quick] [--samples N] [--d D] [--seeds S]
Writes <out>/reuse_vs_fresh.png and <out>/reuse_vs_fresh.json (default out: figures/claims).
"""

from __future__ import annotations

import jax

jax.config.update("jax_enable_x64", True)

import argparse
import os
import sys
import time

import numpy as np

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from _common import (  # noqa: E402
    blowup,
    column_norm_estimate,
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

TARGET_ORDER = ("linear", "he2", "he3", "he4", "tanh_he3", "z1_plus_he3", "staircase2",
                "staircase3", "z1z2z3", "sign_z1z2z3")
# Directions (1-based) the paper's characterisation says reuse reaches from m_0 = 0 in finite time:
# every direction not protected by a symmetry of the target (sign flips leaving y invariant).
EXPECTED_REUSE = {
    "linear": "1", "he2": "none (even)", "he3": "1", "he4": "none (even)", "tanh_he3": "1,2",
    "z1_plus_he3": "1,2", "staircase2": "1,2", "staircase3": "1,2,3",
    "z1z2z3": "none (pair flips)", "sign_z1z2z3": "none (pair flips)",
}
# ... and what one-pass (fresh) GD reaches from m_0 = 0 (information / leap exponent 1 only).
EXPECTED_FRESH = {
    "linear": "1", "he2": "none", "he3": "none", "he4": "none", "tanh_he3": "1,2 (IE 1)",
    "z1_plus_he3": "1", "staircase2": "1,2", "staircase3": "1,2,3 (leap 1)", "z1z2z3": "none",
    "sign_z1z2z3": "none",
}


def parse(argv):
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke sizes")
    ap.add_argument("--samples", type=int, default=None, help="DMFT effective samples (part 1)")
    ap.add_argument("--table-samples", type=int, default=None, help="DMFT samples (part 2)")
    ap.add_argument("--d", type=int, default=None, help="simulation dimension (part 1)")
    ap.add_argument("--table-d", type=int, default=None, help="simulation dimension (part 2)")
    ap.add_argument("--seeds", type=int, default=None, help="simulation seeds")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--alpha", type=float, default=2.0)
    ap.add_argument("--lrs", type=str, default="0.5,1,2,4", help="learning rates of part 1")
    ap.add_argument("--steps", type=int, default=None)
    ap.add_argument("--table-lr", type=float, default=1.0)
    ap.add_argument("--m0-small", type=float, default=0.05)
    ap.add_argument("--out", default="figures/claims")
    a = ap.parse_args(argv)
    if a.quick:
        dflt = dict(samples=16_000, table_samples=16_000, d=200, table_d=200, seeds=4, steps=4)
    else:
        dflt = dict(samples=320_000, table_samples=240_000, d=2000, table_d=1000, seeds=32,
                    steps=10)
    for k, v in dflt.items():
        if getattr(a, k) is None:
            setattr(a, k, v)
    a.lrs = [float(x) for x in a.lrs.split(",")]
    return a


def he3_problem(a, lr, schedule, m0=None):
    return dmft.make_problem("he3", p=2, activation="relu", alpha=a.alpha, lr=lr,
                             steps=a.steps, schedule=schedule, m0=m0)


def part1(a):
    """he3: reuse against fresh over the learning rates."""
    res = {"lrs": a.lrs, "dmft": {}, "sim": {}}
    for sch in ("reuse", "fresh"):  # the schedule is structural: one η sweep per schedule
        _, runs = run_sweep(he3_problem(a, a.lrs[0], sch), {"lr": a.lrs}, a.samples, a.seed)
        for lr, (tr, status, sec) in zip(a.lrs, runs, strict=True):
            v, e = norm_estimate(tr.m)
            res["dmft"][f"{sch}:{lr:g}"] = dict(norm=v, se=e, status=status, seconds=sec,
                                               blowup=blowup(tr),
                                               Qdiag=np.einsum("tii->t", tr.Q.value) / 2)
            print(f"  DMFT {sch:5s} eta={lr:<4g} {status:18s} {sec:6.1f}s  "
                  f"|m_T|={fmt(v[-1], e[-1])}  blow-up={blowup(tr)}", flush=True)
    # headline learning rate: the largest significance of |m_T| for reuse without blow-up
    best, best_z = a.lrs[0], -1.0
    for lr in a.lrs:
        r = res["dmft"][f"reuse:{lr:g}"]
        if r["status"] == "ok" and not r["blowup"] and len(r["norm"]) == a.steps + 1:
            z = r["norm"][-1] / max(r["se"][-1], 1e-300)
            if z > best_z:
                best, best_z = lr, z
    res["headline_lr"] = best
    for lr in a.lrs:
        schedules = ("reuse", "fresh") if lr == best else ("reuse",)
        for sch in schedules:
            tr, status, sec = run_sim(he3_problem(a, lr, sch), a.d, a.seeds, a.seed + 1)
            v, e = norm_estimate(tr.m)
            fv, fe = per_seed_norm(tr)
            res["sim"][f"{sch}:{lr:g}"] = dict(norm=v, se=e, seed_norm=fv, seed_norm_se=fe,
                                              status=status, seconds=sec, blowup=blowup(tr))
            print(f"  SIM  {sch:5s} eta={lr:<4g} {status:18s} {sec:6.1f}s  "
                  f"|mean m_T|={fmt(v[-1], e[-1])}  mean|m_T|={fmt(fv[-1], fe[-1])}", flush=True)
    return res


def learned_dirs(col_v, col_e, thr=4.0):
    idx = [i + 1 for i in range(len(col_v)) if col_v[i] > thr * col_e[i]]
    return ",".join(map(str, idx)) if idx else "none"


def part2(a):
    """Every shipped target with reuse and fresh from m_0 = 0 (and 0.05 where 0 stays put)."""
    out = {}
    for name in TARGET_ORDER:
        k = dmft.TARGETS[name].k
        row = {"k": k, "expected_reuse": EXPECTED_REUSE[name],
               "expected_fresh": EXPECTED_FRESH[name]}
        small = {}
        for sch in ("reuse", "fresh"):
            # one sweep over m_0 ∈ {0, m0_small}; the m0_small run is kept only where reuse from
            # m_0 = 0 stays at 0 (it costs little: same compilation, one more vmapped point)
            pr = dmft.make_problem(name, p=2, activation="relu", alpha=a.alpha, lr=a.table_lr,
                                   steps=a.steps, schedule=sch)
            _, runs = run_sweep(pr, {"m0": [0.0, a.m0_small]}, a.table_samples, a.seed)
            (tr, status, sec), small[sch] = runs
            v, e = norm_estimate(tr.m)
            cv, ce = column_norm_estimate(tr.m)
            complete = status == "ok" and len(v) == a.steps + 1
            row[sch] = dict(norm=v, se=e, col=cv, col_se=ce, status=status, seconds=sec,
                            blowup=blowup(tr),
                            learned=bool(complete and v[-1] > 4 * e[-1]),
                            dirs=learned_dirs(cv[-1], ce[-1]) if complete else "n/a")
        if a.table_d:
            pr = dmft.make_problem(name, p=2, activation="relu", alpha=a.alpha, lr=a.table_lr,
                                   steps=a.steps, schedule="reuse")
            tr, status, sec = run_sim(pr, a.table_d, a.seeds, a.seed + 1)
            v, e = norm_estimate(tr.m)
            fv, fe = per_seed_norm(tr)
            row["sim_reuse"] = dict(norm=v, se=e, seed_norm=fv, seed_norm_se=fe, status=status,
                                    seconds=sec)
        if not row["reuse"]["learned"]:
            for sch in ("reuse", "fresh"):
                tr, status, sec = small[sch]
                v, e = norm_estimate(tr.m)
                row[f"{sch}_m0small"] = dict(norm=v, se=e, status=status, seconds=sec,
                                             blowup=blowup(tr))
        out[name] = row
        r, f = row["reuse"], row["fresh"]
        print(f"  {name:12s} reuse |m_T|={fmt(r['norm'][-1], r['se'][-1])} dirs={r['dirs']:6s} "
              f"fresh |m_T|={fmt(f['norm'][-1], f['se'][-1])} dirs={f['dirs']}", flush=True)
    return out


def figure(a, p1, p2, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axs = plt.subplots(1, 3, figsize=(15, 4.6), layout="constrained")
    t = np.arange(a.steps + 1)
    lr = p1["headline_lr"]
    ax = axs[0]
    for sch, c in (("reuse", "C0"), ("fresh", "C3")):
        r = p1["dmft"][f"{sch}:{lr:g}"]
        n = len(r["norm"])
        ax.plot(t[:n], r["norm"], color=c, label=f"DMFT {sch}")
        ax.fill_between(t[:n], r["norm"] - r["se"], r["norm"] + r["se"], color=c, alpha=0.25)
        s = p1["sim"].get(f"{sch}:{lr:g}")
        if s is not None:
            n = len(s["norm"])
            ax.errorbar(t[:n], s["norm"], s["se"], fmt="o", ms=4, color=c, capsize=2,
                        label=f"sim {sch}: ‖seed-mean m‖")
    s = p1["sim"].get(f"fresh:{lr:g}")
    if s is not None:
        n = len(s["seed_norm"])
        ax.errorbar(t[:n], s["seed_norm"], s["seed_norm_se"], fmt="s--", ms=3, color="0.5",
                    capsize=2, lw=1, label="sim fresh: mean per-seed ‖m‖ (1/√d floor)")
    ax.set_xlabel("GD step t")
    ax.set_ylabel("‖m_t‖ (Frobenius, p×k)")
    ax.set_title(f"he3, p=2 ReLU, α={a.alpha:g}, η={lr:g} (d={a.d}, {a.seeds} seeds)")
    ax.legend(fontsize=7, loc="upper left")

    ax = axs[1]
    for i, lr in enumerate(p1["lrs"]):
        r = p1["dmft"][f"reuse:{lr:g}"]
        n = len(r["norm"])
        lab = f"reuse η={lr:g}" + (" (blow-up)" if r["blowup"] else "")
        ax.plot(t[:n], np.abs(r["norm"]) / np.maximum(r["se"], 1e-300), color=f"C{i}", label=lab)
        f = p1["dmft"][f"fresh:{lr:g}"]
        n = len(f["norm"])
        ax.plot(t[:n], f["norm"] / np.maximum(f["se"], 1e-300), color=f"C{i}", ls=":")
    ax.axhline(4, color="k", lw=0.8, ls="--")
    ax.text(0.2, 4.2, "4 SE", fontsize=7)
    ax.plot([], [], color="k", ls=":", label="fresh (same η)")
    ax.set_xlabel("GD step t")
    ax.set_ylabel("DMFT ‖m_t‖ / SE")
    ax.set_title("he3: significance of the overlap (DMFT)")
    ax.legend(fontsize=7, loc="upper left")

    ax = axs[2]
    names = list(p2)
    x = np.arange(len(names))
    for j, (sch, c) in enumerate((("reuse", "C0"), ("fresh", "C3"))):
        z = [p2[nm][sch]["norm"][-1] / max(p2[nm][sch]["se"][-1], 1e-300) for nm in names]
        ax.bar(x + (j - 0.5) * 0.38, np.maximum(z, 1e-2), 0.38, color=c,
               label=f"{sch}, m_0 = 0")
    z = []
    for nm in names:
        r = p2[nm].get("reuse_m0small")
        z.append(np.nan if r is None else r["norm"][-1] / r["norm"][0])
    ax.plot(x - 0.19, z, "k^", ms=5, label=f"reuse from m_0={a.m0_small:g}: ‖m_T‖/‖m_0‖")
    ax.axhline(4, color="k", lw=0.8, ls="--")
    ax.set_yscale("log")
    ax.set_xticks(x, names, rotation=40, ha="right")
    ax.set_ylabel("DMFT ‖m_T‖ / SE  (triangles: growth factor)")
    ax.set_title(f"all targets, α={a.alpha:g}, η={a.table_lr:g}, T={a.steps}")
    ax.legend(fontsize=7, loc="upper right")
    save_png(fig, path)
    plt.close(fig)


def main(argv=None) -> int:
    a = parse(argv)
    t0 = time.perf_counter()
    print(f"[reuse_vs_fresh] part 1: he3, alpha={a.alpha}, T={a.steps}, etas={a.lrs}, "
          f"DMFT samples={a.samples}, sim d={a.d} x {a.seeds} seeds", flush=True)
    p1 = part1(a)
    lr = p1["headline_lr"]
    print(f"\nhe3, eta={lr:g}: ||m_t|| (DMFT ± SE; sim = norm of seed-mean m ± SE; "
          "floor = seed mean of per-seed ||m|| with fresh batches)")
    rows = []
    dr, df = p1["dmft"][f"reuse:{lr:g}"], p1["dmft"][f"fresh:{lr:g}"]
    sr, sf = p1["sim"][f"reuse:{lr:g}"], p1["sim"][f"fresh:{lr:g}"]
    for t in range(a.steps + 1):
        def g(r, key="norm", ekey="se"):
            return fmt(r[key][t], r[ekey][t]) if t < len(r[key]) else "—"
        rows.append([t, g(dr), g(sr), g(df), g(sf), g(sf, "seed_norm", "seed_norm_se")])
    print_table(["t", "DMFT reuse", "sim reuse", "DMFT fresh", "sim fresh", "sim floor"], rows)

    print(f"\n[reuse_vs_fresh] part 2: all targets, reuse/fresh from m0=0, eta={a.table_lr}, "
          f"T={a.steps}, DMFT samples={a.table_samples}, sim (reuse) d={a.table_d}", flush=True)
    p2 = part2(a)
    rows = []
    for nm, row in p2.items():
        r, f = row["reuse"], row["fresh"]
        s = row.get("sim_reuse")
        rs = row.get("reuse_m0small")
        fs = row.get("fresh_m0small")
        rows.append([
            nm, fmt(r["norm"][-1], r["se"][-1], 3), "yes" if r["learned"] else "no", r["dirs"],
            row["expected_reuse"],
            fmt(s["norm"][-1], s["se"][-1], 3) if s else "—",
            fmt(f["norm"][-1], f["se"][-1], 3), "yes" if f["learned"] else "no", f["dirs"],
            (f"{rs['norm'][-1] / rs['norm'][0]:.2f}" if rs and len(rs["norm"]) == a.steps + 1
             else "—"),
            (f"{fs['norm'][-1] / fs['norm'][0]:.2f}" if fs and len(fs["norm"]) == a.steps + 1
             else "—"),
        ])
    print_table(["target", "reuse |m_T|", "learned", "dirs", "paper (reuse)", "sim reuse",
                 "fresh |m_T|", "learned", "dirs", "reuse x(m0)", "fresh x(m0)"], rows)
    print(f"(x(m0) = ||m_T|| / ||m_0|| from m0 = {a.m0_small:g} in every entry, only where reuse "
          "from 0 stayed at 0)")

    # verdicts
    r_ok = dr["status"] == "ok" and dr["norm"][-1] > 4 * dr["se"][-1]
    f_zero = df["norm"][-1] < 4 * df["se"][-1]
    first = next((t for t in range(len(dr["norm"])) if dr["norm"][t] > 4 * dr["se"][t]), None)
    sim_r = sr["norm"][-1] > 4 * sr["se"][-1]
    sim_f = sf["norm"][-1] < 4 * sf["se"][-1]
    agree = []
    for nm, row in p2.items():
        exp_none = row["expected_reuse"].startswith("none")
        agree.append((nm, row["reuse"]["learned"] != exp_none))
    n_agree = sum(ok for _, ok in agree)
    mism = [nm for nm, ok in agree if not ok]
    verdict = (
        f"he3 eta={lr:g}: reuse {'LEARNS' if r_ok else 'does NOT learn'} from m0=0 "
        f"(DMFT |m_{a.steps}|={fmt(dr['norm'][-1], dr['se'][-1], 3)}, first >4SE at "
        f"t={first}; sim {'>' if sim_r else '<='}4SE), fresh "
        f"{'stays at 0' if f_zero else 'MOVES'} (DMFT {fmt(df['norm'][-1], df['se'][-1], 3)}; "
        f"sim {'consistent with 0' if sim_f else 'NOT 0'}); targets: {n_agree}/{len(agree)} "
        f"match the paper's learned/hard split"
        + (f" (mismatch: {', '.join(mism)})" if mism else "")
    )
    claim_holds = r_ok and f_zero and n_agree == len(agree)
    word = ("SUPPORTED" if claim_holds
            else "PARTLY SUPPORTED" if r_ok and f_zero else "NOT SUPPORTED")
    print(f"\nVERDICT: {word} — {verdict}")
    os.makedirs(a.out, exist_ok=True)
    png = os.path.join(a.out, "reuse_vs_fresh.png")
    figure(a, p1, p2, png)
    data = dict(claim="reuse learns he3 (IE 3) from m0=0 in finite steps, fresh does not; hard "
                      "symmetric targets stay at 0", args=vars(a), part1=p1, part2=p2,
                verdict=verdict, supported=claim_holds,
                first_step_over_4se=first, wall_time_s=time.perf_counter() - t0)
    write_json(os.path.join(a.out, "reuse_vs_fresh.json"), data)
    print(f"wrote {png} and reuse_vs_fresh.json ({time.perf_counter() - t0:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
