"""Figure of a feature study (``dmft.features``): spectra before/after, test error against λ.

Accepts a :class:`~dmft.features.FeaturesResult` or the path of a ``dmft-features`` file and
changes no global matplotlib settings (the style of :mod:`dmft.plot` is applied in a context).
"""

from __future__ import annotations

import numpy as np

from ..plot import _COLORS, save_figure, style

_LABELS = {"rf": "random features (init)", "step": "after the step(s)",
           "spiked": "spiked RF equivalent"}


def _as_result(x):
    if hasattr(x, "per_seed"):
        return x
    from ..io import load_features

    return load_features(x)


def plot_features(result, fig=None):
    """Two panels: (a) spectra of FᵀF/n₁ pooled over seeds, before and after, with the mean
    outlier positions marked; (b) readout test error against λ (markers ± 1 SE) with the
    closed-form random-feature line and, when the result carries it (``--theory``), the
    after-step theory (lines; outlier positions on panel a). Returns the Figure."""
    import matplotlib.pyplot as plt

    r = _as_result(result)
    c = r.config
    with style():
        if fig is None:
            fig = plt.figure(figsize=(9.2, 3.6), layout="constrained")
        ax1, ax2 = fig.subplots(1, 2)
        ev = {m: r.per_seed[f"{m}/eigenvalues"] for m in r.maps}
        pos = np.concatenate([v[v > 1e-10] for v in ev.values()])
        lo, hi = max(pos.min(), 1e-4), pos.max()
        bins = np.geomspace(lo, hi * 1.05, 80)
        for i, m in enumerate(r.maps):
            vals = ev[m].ravel()
            ax1.hist(vals[vals > 1e-10], bins=bins, density=True, histtype="step",
                     color=_COLORS[i], lw=1.3, label=_LABELS[m])
            if m != "rf" and f"{m}/n_outliers" in r.per_seed:
                n_out = int(round(float(np.mean(r.per_seed[f"{m}/n_outliers"]))))
                top = r.per_seed[f"{m}/top"].mean(axis=0)[::-1][:n_out]  # at most 3
                for j, v in enumerate(top):
                    ax1.axvline(v, color=_COLORS[i], ls=":" if m == "spiked" else "--", lw=1.0,
                                label=f"outliers ({_LABELS[m]})" if j == 0 else None)
        if "bulk_edge" in r.per_seed:
            ax1.axvline(float(np.mean(r.per_seed["bulk_edge"])), color="0.4", lw=0.8,
                        label="bulk edge")
        ax1.set_xscale("log")
        ax1.set_yscale("log")
        ax1.set_xlabel(r"eigenvalue of $F^\top F/n_1$")
        ax1.set_ylabel("density (pooled over seeds)")
        ax1.legend(frameon=False, fontsize=7)
        ax1.set_title(f"(a) spectra, d={c.d}, p={c.p}")

        lam = np.asarray(c.ridges)
        for i, m in enumerate(r.maps):
            est = r.estimate(f"{m}/test_error")
            ax2.errorbar(lam * (1.0 + 0.04 * (i - 1)), est.value, yerr=est.error, fmt="o",
                         ms=4, mfc="white", color=_COLORS[i], capsize=2, label=_LABELS[m])
        if r.theory is not None:
            grid = np.geomspace(lam.min(), lam.max(), 60)
            from ._rf_theory import rf_test_error

            th = rf_test_error(c.kappa, c.alpha1, grid, c.activation, c.target, c.noise)
            ax2.plot(grid, th["test_error"], color=_COLORS[0], lw=1.2,
                     label="random features, closed form (d → ∞)")
        if r.step_theory is not None:
            _plot_step_theory(ax1, ax2, r, grid if r.theory is not None else
                              np.geomspace(lam.min(), lam.max(), 60))
        ax2.set_xscale("log")
        ax2.set_xlabel(r"ridge $\lambda$")
        ax2.set_ylabel(r"test error $E(y-f)^2/2$")
        ax2.legend(frameon=False, fontsize=7)
        ax2.set_title(f"(b) readout, {c.target}, σ={c.activation}, η={c.eta:.3g}, "
                      f"{r.seeds} seeds", fontsize=8)
    return fig


def _plot_step_theory(ax1, ax2, r, grid):
    """The after-step theory: test error against λ on a fine grid (d → ∞ and at this p) and the
    predicted outlier positions p·θ on the spectrum panel."""
    import dataclasses

    from ._theory import _solve

    c = r.config
    # one evaluation at the standard rules (the lines need no quadrature-error estimate)
    th = _solve(dataclasses.replace(c, ridges=tuple(float(v) for v in grid)), 1.0)
    color = _COLORS[1]
    ax2.plot(grid, th["test_error"], color=color, lw=1.2, label="after the step, theory (d → ∞)")
    ax2.plot(grid, th["test_error_at_p"], color=color, lw=1.0, ls="--",
             label=f"after the step, theory at p = {c.p}")
    edge = float(np.mean(r.per_seed["bulk_edge"])) if "bulk_edge" in r.per_seed else 0.0
    shown = [v for v in np.asarray(r.step_theory["top_over_p"]) * c.p if v > edge]
    for j, v in enumerate(shown):  # those that leave the bulk at this p
        if v > 0:
            ax1.axvline(v, color="k", lw=0.8, ls="-.",
                        label="outliers, theory (p·θ)" if j == 0 else None)
    ax1.legend(frameon=False, fontsize=7)


__all__ = ["plot_features", "save_figure"]
