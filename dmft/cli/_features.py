"""``dmft features``: a wide network after giant GD step(s): the feature spectra, their
outliers, and the ridge readout of the random, after-step and spiked-equivalent features."""

from __future__ import annotations

import json
import sys

from .._errors import DMFTInputError
from .._validate import check_int
from ._common import (
    Formatter,
    add_out_arg,
    add_progress_arg,
    add_seed_arg,
    check_out,
    parse_floats,
    progress_from_args,
)
from ._guard import before_write


def add_parser(subparsers) -> None:
    p = subparsers.add_parser(
        "features", help="wide network after giant GD step(s): feature spectra, "
        "outliers and ridge readout (random, after-step, spiked equivalent)",
        formatter_class=Formatter)
    g = p.add_argument_group("model")
    g.add_argument("--target", default="tanh_he3", help="registered target name")
    g.add_argument("--activation", default="relu", help="student activation")
    g.add_argument("--d", type=int, default=500, help="input dimension d")
    g.add_argument("--kappa", type=float, default=1.0, help="width ratio p/d, in [0.25, 4]")
    g.add_argument("--alpha0", type=float, default=2.0,
                   help="step batch constant c: n0 = c·d**samples_exponent")
    g.add_argument("--samples-exponent", type=float, default=1.0,
                   help="ℓ in [1, 2]: step batch n0 = alpha0·d**ℓ (2: one step reaches "
                   "second-order Hermite directions)")
    g.add_argument("--alpha1", type=float, default=2.0, help="readout sample ratio n1/d")
    g.add_argument("--lr", type=float, default=1.0, help="learning-rate constant")
    g.add_argument("--lr-scaling", default="sqrt_p",
                   help="sqrt_p (η = lr·√p, giant step) or const (η = lr)")
    g.add_argument("--steps", type=int, default=1, help="GD steps on the first layer (0: none)")
    g.add_argument("--batch", default="fresh", help="fresh or reuse (batch across steps)")
    g.add_argument("--ridges", default="0.01,0.1,1,10", help="ridge values λ, comma-separated")
    g.add_argument("--label-noise", type=float, default=0.0, help="label-noise variance Δ")
    g.add_argument("--spike-rank", type=int, default=1,
                   help="rank of the spike kept in the spiked equivalent")
    g.add_argument("--n-test", type=int, default=0, help="test samples (0: max(n1, 1000))")
    g.add_argument("--second-layer", default="sign",
                   help="sign (a_j = ±1/√p) or gaussian (a_j ~ N(0, 1/p)), fixed")
    g.add_argument("--theory", action="store_true",
                   help="also the d → ∞ theory after one giant step (features_theory), "
                        "printed next to the simulation and saved in the file")
    r = p.add_argument_group("run")
    r.add_argument("--seeds", type=int, default=8,
                   help="independent seeds, at least 2 (for the standard errors)")
    add_seed_arg(r)
    r.add_argument("--quick", action="store_true", help="tiny sizes: a seconds-long smoke run")
    add_progress_arg(r)
    add_out_arg(r)
    r.add_argument("--figure", default=None, help="figure file (.png, .pdf, ...)")
    p.set_defaults(func=cmd_features)


def cmd_features(args) -> int:
    """``dmft features``: wide network after giant step(s); spectra and ridge readout."""
    from .. import io
    from ..features import FeaturesConfig, simulate_features

    out = check_out(args.out)
    if args.seeds == 1:
        raise DMFTInputError("`--seeds` must be >= 2: the standard errors over seeds need at "
                             "least two seeds; got --seeds=1")
    check_int("seeds", args.seeds, low=2)
    check_int("seed", args.seed, low=0)
    ridges = parse_floats("ridges", args.ridges)
    kw = dict(target=args.target, activation=args.activation, d=args.d, kappa=args.kappa,
              alpha0=args.alpha0, samples_exponent=args.samples_exponent, alpha1=args.alpha1,
              lr=args.lr, lr_scaling=args.lr_scaling,
              steps=args.steps, batch=args.batch, ridges=tuple(ridges), noise=args.label_noise,
              spike_rank=args.spike_rank, n_test=args.n_test, second_layer=args.second_layer)
    if args.quick:
        kw.update(d=min(args.d, 64), n_test=min(args.n_test or 256, 256))
        args.seeds = min(args.seeds, 2)
    config = FeaturesConfig(**kw)
    theory = None
    if args.theory:  # before anything is printed or simulated: refuses what it does not cover
        from ..features import features_theory

        theory = features_theory(config)
    print("dmft features:")
    for key, val in config.to_dict().items():
        print(f"  {key:<15}{json.dumps(val)}")
    print(f"  {'seeds':<15}{args.seeds}\n  {'seed':<15}{args.seed}")
    sys.stdout.flush()
    res = simulate_features(config, seeds=args.seeds, seed=args.seed,
                            progress=progress_from_args(args))
    if theory is not None:
        res.step_theory = theory.as_dict()
    print(features_table(res))
    before_write()
    io.save_features(res, out, command_line=args.command_line)
    print(f"wrote {out}")
    if args.figure:
        import matplotlib.pyplot as plt

        from ..features import plot_features
        from ..plot import save_figure

        fig = plot_features(res)
        before_write()
        save_figure(fig, args.figure)
        plt.close(fig)
        print(f"wrote {args.figure}")
    return 0


def features_table(res) -> str:
    """Test error per λ (mean ± SE over seeds) of each feature map, and the closed form."""
    import numpy as np

    lam = res.config.ridges
    head = f"{'test error':<22}" + "".join(f"{'λ=' + format(v, 'g'):>18}" for v in lam)
    rows = [head]
    for m in res.maps:
        est = res.estimate(f"{m}/test_error")
        rows.append(f"{m:<22}" + "".join(f"{v:>11.4f}±{e:<6.4f}"
                                          for v, e in zip(est.value, est.error, strict=True)))
    if res.theory is not None:
        rows.append(f"{'rf closed form (d→∞)':<22}"
                    + "".join(f"{v:>18.4f}" for v in res.theory["test_error"]))
    th = res.step_theory
    if th is not None:
        for key, label in (("test_error", "theory (d→∞)"), ("test_error_at_p", "theory at this p")):
            rows.append(f"{label:<22}" + "".join(f"{v:>18.4f}" for v in th[key]))
        rows.append(f"{'train error':<22}" + "".join(f"{'λ=' + format(v, 'g'):>18}" for v in lam))
        est = res.estimate("step/train_error")
        rows.append(f"{'step':<22}" + "".join(f"{v:>11.4f}±{e:<6.4f}"
                                              for v, e in zip(est.value, est.error, strict=True)))
        rows.append(f"{'theory (d→∞)':<22}" + "".join(f"{v:>18.4f}" for v in th["train_error"]))
        top = res.estimate("step/top")
        p = res.config.p
        rows.append(f"outliers/p: step {top.value[-1] / p:.5f}±{top.error[-1] / p:.5f}, "
                    f"{top.value[-2] / p:.5f}±{top.error[-2] / p:.5f}; theory "
                    + ", ".join(f"{v:.5f}" for v in th["top_over_p"]))
        ov = np.asarray(th["overlap"])[0]
        rows.append("theory: overlap of the top outlier's direction with the target directions "
                    + np.array2string(ov, precision=3))
    if "step/top" in res.per_seed:
        for m in ("step", "spiked"):
            top = res.estimate(f"{m}/top")
            n = res.estimate(f"{m}/n_outliers")
            ov = res.estimate(f"{m}/overlap")
            rows.append(f"{m}: outliers {n.value:.2f}±{n.error:.2f}, top eigenvalue "
                        f"{top.value[-1]:.4g}±{top.error[-1]:.2g}, its overlap with the target "
                        f"directions {np.array2string(ov.value[-1], precision=3)}")
        from ..features import N_TOP

        ov = res.estimate("step_overlap")
        for t in range(ov.value.shape[0]):
            rows.append(f"after step {t + 1}: overlap of the learned subspace (top {N_TOP} "
                        f"singular vectors of W_t - W_0) with the target directions "
                        f"{np.array2string(ov.value[t], precision=3)} ± "
                        f"{np.array2string(ov.error[t], precision=3)}")
        w1 = res.estimate("w1_step_spiked")
        rows.append(f"W1(step, spiked spectra) = {w1.value:.4g} ± {w1.error:.2g}; bulk edge "
                    f"{res.estimate('bulk_edge').value:.4g}")
    return "\n".join(rows)
