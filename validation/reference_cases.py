"""Reference results of the public API, to check that a refactor leaves the numbers unchanged.

``python validation/reference_cases.py --out ref.npz`` runs a fixed set of small float64 cases
(DMFT solves over every schedule kind, response and loss, a sweep, the simulator, gradient flow,
the online ODE and the giant-step features) and saves every reported array. With ``--against
OLD.npz`` it prints, per case, the largest relative difference max|new − old| / max|old| over the
case's arrays, and exits non-zero above ``--rtol``. Only public names are used, so the same
script runs on an older checkout.
"""

from __future__ import annotations

import argparse
import sys
import warnings

import numpy as np


def _arrays(prefix: str, traj) -> dict:
    out = {}
    names = ("m", "Q", "test_error", "train_loss", "a", "test_loss")
    for name in names:
        est = getattr(traj, name, None)
        if est is None:
            continue
        out[f"{prefix}/{name}/value"] = np.asarray(est.value)
        out[f"{prefix}/{name}/error"] = np.asarray(est.error)
    for name, est in (getattr(traj, "kernels", None) or {}).items():
        out[f"{prefix}/kernel/{name}/value"] = np.asarray(est.value)
        out[f"{prefix}/kernel/{name}/error"] = np.asarray(est.error)
    return out


def cases() -> dict:
    import jax

    jax.config.update("jax_enable_x64", True)
    import dmft

    mp = dmft.make_problem
    res = {}
    solve_cases = {
        "tanh_he3_reuse": (mp("tanh_he3", steps=6), {}),
        "he3_repeat2_pathwise_erf": (mp("he3", activation="erf", lr=0.8, alpha=2.0, steps=5,
                                        schedule="repeat:2"), {"response": "pathwise"}),
        "he2_fresh": (mp("he2", lr=0.5, steps=5, schedule="fresh"), {}),
        "z1_plus_he3_sgd_trained_a": (mp("z1_plus_he3", lr=0.3, steps=5, schedule="sgd:0.5",
                                         lr_a=0.1, noise=0.1, ridge=0.05), {}),
        "staircase2_epochs3_p3": (mp("staircase2", p=3, lr=0.4, steps=6, schedule="epochs:3"),
                                  {}),
        "sign_logistic": (mp("sign_z1z2z3", loss="logistic", lr=0.5, steps=4), {}),
        "linear_list": (mp("linear", p=1, activation="linear", second_layer="ones", lr=0.3,
                           steps=5, schedule=[0, 0, 1, 1, 0]), {}),
    }
    for name, (pr, kw) in solve_cases.items():
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            t = dmft.solve(pr, 20_000, seed=3, replicas=4, progress=False, **kw)
        res.update(_arrays(f"solve/{name}", t))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        sw = dmft.sweep(mp("he3", schedule="repeat:2", steps=4),
                        over={"lr": [0.3, 0.9], "alpha": [1.0, 2.5]}, samples=8_000, seed=1,
                        replicas=4, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        est = getattr(sw, name)
        res[f"sweep/{name}/value"] = np.asarray(est.value)
        res[f"sweep/{name}/error"] = np.asarray(est.error)
    for name, pr in {"tanh_he3": mp("tanh_he3", steps=4),
                     "sgd_trained_a": mp("z1_plus_he3", steps=4, schedule="sgd:0.5", lr_a=0.2,
                                         noise=0.1)}.items():
        s = dmft.simulate(pr, d=300, seeds=4, seed=2, progress=False)
        res.update(_arrays(f"simulate/{name}", s))
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        f = dmft.solve_flow(mp("he3", steps=4), 1.0, dt=0.25, samples=8_000, replicas=4,
                            seed=4, progress=False)
        res.update(_arrays("flow/he3", f))
        o = dmft.solve_online(mp("he3", steps=4), 1.0, n_out=5, samples=8_000, replicas=4,
                              seed=5, progress=False)
        res.update(_arrays("online/he3", o))
    fr = dmft.simulate_features(target="tanh_he3", d=80, kappa=1.0, alpha0=2.0, alpha1=2.0,
                                ridges=(0.01, 1.0), seeds=2, seed=6, progress=False)
    for key, arr in fr.per_seed.items():
        res[f"features/{key}"] = np.asarray(arr)
    return res


def compare(new: dict, old: dict, rtol: float) -> int:
    groups: dict[str, float] = {}
    missing = sorted(set(old) - set(new))
    for key, a in old.items():
        if key not in new:
            continue
        b = new[key]
        case = "/".join(key.split("/")[:2])
        if a.shape != b.shape:
            groups[case] = np.inf
            print(f"shape differs: {key} {a.shape} -> {b.shape}")
            continue
        scale = np.nanmax(np.abs(a)) if a.size and np.any(np.isfinite(a)) else 0.0
        diff = np.nanmax(np.abs(a - b)) if a.size else 0.0
        if np.any(np.isnan(a) != np.isnan(b)):
            diff = np.inf
        rel = diff / scale if scale > 0 else diff
        groups[case] = max(groups.get(case, 0.0), float(rel))
    worst = 0.0
    for case, rel in sorted(groups.items()):
        print(f"{case:<45} max rel diff {rel:.2e}")
        worst = max(worst, rel)
    if missing:
        print(f"missing in new: {missing}")
    ok = worst <= rtol and not missing
    print(f"worst {worst:.2e} (rtol {rtol:g}): {'PASS' if ok else 'FAIL'}")
    return 0 if ok else 1


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", help="write the results here (.npz)")
    ap.add_argument("--against", help="compare with this earlier .npz")
    ap.add_argument("--rtol", type=float, default=1e-14)
    args = ap.parse_args(argv)
    new = cases()
    if args.out:
        np.savez(args.out, **new)
        print(f"wrote {len(new)} arrays to {args.out}")
    if args.against:
        with np.load(args.against) as f:
            old = {k: f[k] for k in f.files}
        return compare(new, old, args.rtol)
    return 0


if __name__ == "__main__":
    sys.exit(main())
