"""Figures: DMFT trajectories (lines with ±SE bands) against simulations (markers with error bars).

Every function accepts :class:`~dmft.Trajectory` objects or paths to saved files and
changes no global matplotlib settings: styling is applied inside a ``matplotlib.rc_context``.
"""

from __future__ import annotations

import contextlib
import os

import matplotlib
import numpy as np

from .observables import DERIVED, OBSERVABLES, OPTIONAL

_STYLE = {
    "font.size": 9,
    "axes.titlesize": 10,
    "axes.labelsize": 10,
    "legend.fontsize": 8,
    "xtick.labelsize": 8,
    "ytick.labelsize": 8,
    "axes.spines.top": False,
    "axes.spines.right": False,
    "lines.linewidth": 1.6,
    "savefig.dpi": 200,
}
_COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b", "#e377c2",
           "#17becf", "#7f7f7f", "#bcbd22")
_MAX_ENTRIES = 10  # at most this many curves per panel (the first ones)


def style():
    """The context manager holding this module's style; use it around your own additions."""
    return matplotlib.rc_context(_STYLE)


def _as_traj(x):
    if x is None or hasattr(x, "kind"):
        return x
    from .io import load

    return load(x)


def _axes(ax):
    """(figure, axes, standalone): a new figure when ``ax`` is None."""
    import matplotlib.pyplot as plt

    if ax is not None:
        return ax.figure, ax, False
    fig, ax = plt.subplots(figsize=(4.6, 3.6), layout="constrained")
    return fig, ax, True


def _draw(ax, theory, sim, name, entries, labels, *, lines=None, colors=_COLORS):
    """Theory as lines with ±SE bands, simulation as markers with error bars, one colour each."""
    handles = []
    for c, (ix, lab) in enumerate(zip(entries, labels, strict=True)):
        color = colors[c % len(colors)]
        ls = "-" if lines is None else lines[c]
        if theory is not None:
            est = theory.observable(name)
            v, e = np.asarray(est.value)[(slice(None),) + ix], np.asarray(est.error)[
                (slice(None),) + ix]
            e = np.nan_to_num(e)
            (h,) = ax.plot(theory.step, v, color=color, ls=ls, label=lab, zorder=2)
            ax.fill_between(theory.step, v - e, v + e, color=color, alpha=0.22, lw=0, zorder=1)
            handles.append(h)
        if sim is not None:
            est = sim.observable(name)
            v, e = np.asarray(est.value)[(slice(None),) + ix], np.asarray(est.error)[
                (slice(None),) + ix]
            h = ax.errorbar(sim.step, v, yerr=np.nan_to_num(e), fmt="o", ms=3.8, mfc="white",
                            mec=color, ecolor=color, mew=1.1, elinewidth=1.0, capsize=2,
                            ls="none", zorder=3, label=None if theory is not None else lab)
            if theory is None:
                handles.append(h)
    time = (theory if theory is not None else sim).time
    ax.set_xlabel(time.label)
    steps = time.values
    if time.name == "tau":  # continuous time (gradient flow, online ODE)
        if len(steps):
            ax.set_xlim(0.0, max(float(np.max(steps)), 1e-12))
        return handles
    if len(steps):
        ax.set_xlim(-0.3, max(int(np.max(steps)), 1) + 0.3)
        ax.xaxis.set_major_locator(matplotlib.ticker.MaxNLocator(integer=True))
    return handles


def _kind_handles(theory, sim):
    """Legend entries saying what lines and markers are."""
    from matplotlib.lines import Line2D

    out = []
    if theory is not None:
        out.append(Line2D([], [], color="0.25",
                          label=_run_label(theory) + r" ($\pm$1 SE band)"))
    if sim is not None:
        out.append(Line2D([], [], color="0.25", marker="o", mfc="white", ls="none",
                          label=_run_label(sim) + r" ($\pm$1 SE)"))
    return out


def _entry_legend(ax, handles, ncol=1, standalone=False, theory=None, sim=None):
    if standalone and theory is not None and sim is not None:
        ax.figure.legend(handles=_kind_handles(theory, sim), loc="outside lower center",
                         frameon=False, fontsize=7.5)
    if handles:
        ax.legend(handles=handles, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, frameon=False, ncol=ncol, handlelength=1.8)


def plot_overlaps(theory, sim=None, ax=None):
    """Signed overlaps m_ji(t) (student unit j, target direction i) against the step.

    Returns the Axes.
    """
    theory, sim = _as_traj(theory), _as_traj(sim)
    ref = theory if theory is not None else sim
    p, k = ref.problem.p, ref.problem.k
    with style():
        fig, ax, alone = _axes(ax)
        entries = [(j, i) for j in range(p) for i in range(k)][:_MAX_ENTRIES]
        labels = [f"$m_{{{j + 1}{i + 1}}}$" for j, i in entries]
        handles = _draw(ax, theory, sim, "m", entries, labels)
        ax.axhline(0.0, color="0.6", lw=0.6, zorder=0)
        ax.set_ylabel(r"overlap $m_{ji}(t)$")
        ax.set_title("overlaps with the target")
        _entry_legend(ax, handles, standalone=alone, theory=theory, sim=sim)
    return ax


def plot_gram(theory, sim=None, ax=None):
    """Student Gram matrix Q_jl(t): diagonal always, off-diagonal too when p ≤ 3."""
    theory, sim = _as_traj(theory), _as_traj(sim)
    ref = theory if theory is not None else sim
    p = ref.problem.p
    with style():
        fig, ax, alone = _axes(ax)
        entries = [(j, j) for j in range(p)]
        if p <= 3:
            entries += [(j, l) for j in range(p) for l in range(j + 1, p)]
        entries = entries[:_MAX_ENTRIES]
        labels = [f"$Q_{{{j + 1}{l + 1}}}$" for j, l in entries]
        lines = ["-" if j == l else "--" for j, l in entries]
        handles = _draw(ax, theory, sim, "Q", entries, labels, lines=lines)
        ax.set_ylabel(r"Gram matrix $Q_{jl}(t)$")
        ax.set_title("student norms and overlaps")
        _entry_legend(ax, handles, standalone=alone, theory=theory, sim=sim)
    return ax


def plot_losses(theory, sim=None, ax=None):
    """Test error e_g(t) (label noise included) and train loss against the step."""
    theory, sim = _as_traj(theory), _as_traj(sim)
    with style():
        fig, ax, alone = _axes(ax)
        h1 = _draw(ax, theory, sim, "test_error", [()], [r"test $e_g(t)$"])
        h2 = _draw(ax, theory, sim, "train_loss", [()], [r"train $\hat L(t)$"],
                   lines=["--"], colors=_COLORS[1:])
        ax.set_ylabel("loss")
        ax.set_title("test error and train loss")
        _entry_legend(ax, h1 + h2, standalone=alone, theory=theory, sim=sim)
    return ax


def _title(ref) -> str:
    pr = ref.problem
    lr = np.asarray(pr.lr)
    lr_txt = f"{lr[0]:g}" if np.all(lr == lr[0]) else "schedule"
    if ref.kind == "online":
        return (f"target {pr.target.name}: $g^*={_math(pr.target.formula)}$, {pr.activation} "
                f"student, $p={pr.p}$, online SGD (one sample per step, lr $\\eta/d$), "
                f"$\\eta={lr_txt}$, $\\lambda={pr.ridge:g}$, $\\Delta={pr.noise:g}$")
    return (f"target {pr.target.name}: $g^*={_math(pr.target.formula)}$, {pr.activation} student, "
            f"$p={pr.p}$, $\\alpha={pr.alpha:g}$, $\\eta={lr_txt}$, $\\lambda={pr.ridge:g}$, "
            f"$\\Delta={pr.noise:g}$, {pr.schedule} batch")


def _math(formula: str) -> str:
    import re

    s = formula.replace(" ", r"\,").replace("sqrt", r"\sqrt")
    s = re.sub(r"z(\d)", r"z_\1", s)
    s = re.sub(r"He(\d)", r"\\mathrm{He}_\1", s)
    s = s.replace("tanh", r"\tanh").replace("sign", r"\mathrm{sign}")
    s = re.sub(r"\\sqrt\((\d+)\)", r"\\sqrt{\1}", s)
    return s


def plot_comparison(theory, sim=None, fig=None):
    """Three panels: overlaps m_ji(t), Gram Q_jl(t), test error and train loss.

    Theory (DMFT) is drawn as lines with ±1 SE bands, the simulation as open markers with ±1 SE
    error bars, in the same colour per entry. Returns the Figure.
    """
    import matplotlib.pyplot as plt

    theory, sim = _as_traj(theory), _as_traj(sim)
    if theory is None and sim is None:
        from ._errors import DMFTInputError

        raise DMFTInputError("plot_comparison needs at least one of `theory` and `sim`")
    ref = theory if theory is not None else sim
    with style():
        if fig is None:
            fig = plt.figure(figsize=(12.5, 3.9), layout="constrained")
        axes = fig.subplots(1, 3)
        plot_overlaps(theory, sim, ax=axes[0])
        plot_gram(theory, sim, ax=axes[1])
        plot_losses(theory, sim, ax=axes[2])
        kind_handles = _kind_handles(theory, sim)
        fig.legend(handles=kind_handles, loc="outside lower center", ncol=2, frameon=False)
        fig.suptitle(_title(ref), fontsize=10)
    return fig


_RUN_LABELS = {"dmft": "DMFT", "flow": r"gradient flow (DMFT, $\eta \to 0$)",
               "online": r"online SGD ODE ($d\to\infty$)"}


def _run_label(traj) -> str:
    s = traj.settings
    if traj.kind != "simulation":
        n = s.get("samples")
        txt = _RUN_LABELS[traj.kind] + (f", $N={_sci(n)}$ samples" if n else "")
    else:
        d, seeds = s.get("d"), s.get("seeds")
        txt = "simulation" + (f", $d={d}$" if d else "") + (f", {seeds} seeds" if seeds else "")
    if traj.status != "ok":
        txt += f" [{traj.status}]"
    return txt


def _sci(n) -> str:
    n = int(n)
    if n < 10_000:
        return str(n)
    e = int(np.floor(np.log10(n)))
    mant = n / 10**e
    return f"{mant:g}\\cdot 10^{{{e}}}" if mant != 1 else f"10^{{{e}}}"


def save_figure(fig, path, *, dpi: int = 200) -> str:
    """Save ``fig`` atomically (temporary file in the same folder, then rename); returns path.

    Raises:
        DMFTInputError: ``path`` has no extension matplotlib can write, is a directory, or
            ``dpi`` is not an integer in [10, 1200].
    """
    from ._errors import DMFTInputError
    from ._validate import check_int

    path = os.fspath(path)
    check_int("dpi", dpi, low=10, high=1200)
    ext = os.path.splitext(path)[1].lower().lstrip(".")
    formats = fig.canvas.get_supported_filetypes()
    if ext not in formats:
        raise DMFTInputError(
            f"`path` must end in one of {', '.join('.' + f for f in sorted(formats))}; "
            f"got path={path!r}"
        )
    if os.path.isdir(path):
        raise DMFTInputError(f"`path` must be a file name, not a directory; got path={path!r}")
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    root, ext = os.path.splitext(path)
    tmp = f"{root}.tmp-{os.getpid()}{ext}"
    try:
        with style():
            fig.savefig(tmp, dpi=dpi)
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.remove(tmp)
        raise
    return path


def plot_online_baseline(gd, online, observable: str = "test_error", ax=None):
    """Multi-pass GD next to the one-pass (online) SGD baseline, at equal samples processed.

    The x axis is "gradient evaluations / d": a GD step t touches all n = αd samples, so it sits
    at α t; online SGD (one sample per step, lr η/d, see :func:`dmft.solve_online`) sits at its
    time τ.
    At small η a GD step with fresh batches equals αd online steps, so the two curves share
    their early time; multi-pass GD reuses its n samples, online SGD has seen τ d distinct ones.

    Args:
        gd: a DMFT or simulation trajectory (or a path to one); ``None`` to omit.
        online: an online trajectory from :func:`dmft.solve_online` (or a path).
        observable: ``test_error``, ``train_loss``, ``m`` (signed overlaps) or ``Q`` (diagonal).
        ax: an Axes to draw into; a new figure when ``None``.

    Returns:
        The Axes.
    """
    from ._validate import check_choice

    check_choice("observable", observable, {"test_error", "train_loss", "m", "Q"})
    gd, online = _as_traj(gd), _as_traj(online)
    ref = online if online is not None else gd
    if ref is None:
        from ._errors import DMFTInputError

        raise DMFTInputError("plot_online_baseline needs at least one of `gd` and `online`")
    p, k = ref.problem.p, ref.problem.k
    if observable == "m":
        entries = [(j, i) for j in range(p) for i in range(k)][:_MAX_ENTRIES]
        labels = [f"$m_{{{j + 1}{i + 1}}}$" for j, i in entries]
    elif observable == "Q":
        entries = [(j, j) for j in range(p)][:_MAX_ENTRIES]
        labels = [f"$Q_{{{j + 1}{j + 1}}}$" for j, _ in entries]
    else:
        entries, labels = [()], [{"test_error": "$e_g$", "train_loss": r"$\hat L$"}[observable]]
    with style():
        fig, ax, alone = _axes(ax)
        for c, (ix, lab) in enumerate(zip(entries, labels, strict=True)):
            color = _COLORS[c % len(_COLORS)]
            for traj, ls in ((gd, "-"), (online, "--")):
                if traj is None:
                    continue
                est = traj.observable(observable)
                v = np.asarray(est.value)[(slice(None),) + ix]
                e = np.nan_to_num(np.asarray(est.error)[(slice(None),) + ix])
                x = (np.asarray(traj.step, dtype=np.float64) if traj.kind == "online"
                     else traj.problem.alpha * np.asarray(traj.step, dtype=np.float64))
                if traj.kind == "simulation":
                    ax.errorbar(x, v, yerr=e, fmt="o", ms=3.5, mfc="white", mec=color,
                                ecolor=color, capsize=2, ls="none", zorder=3)
                else:
                    ax.plot(x, v, color=color, ls=ls, zorder=2,
                            label=lab if traj is ref else None)
                    ax.fill_between(x, v - e, v + e, color=color, alpha=0.2, lw=0, zorder=1)
        ax.set_xlabel(r"gradient evaluations$/d$ (GD: $\alpha t$; online: $\tau$)")
        ax.set_ylabel({"test_error": "test error", "train_loss": "train loss",
                       "m": r"overlap $m_{ji}$", "Q": r"$Q_{jj}$"}[observable])
        ax.set_title("multi-pass GD vs one-pass SGD")
        from matplotlib.lines import Line2D

        kinds = []
        if gd is not None:
            kinds.append(Line2D([], [], color="0.25", ls="-" if gd.kind != "simulation" else "none",
                                marker=None if gd.kind != "simulation" else "o", mfc="white",
                                label=_run_label(gd)))
        if online is not None:
            kinds.append(Line2D([], [], color="0.25", ls="--", label=_run_label(online)))
        handles, _ = ax.get_legend_handles_labels()
        ax.legend(handles=handles + kinds, loc="upper left", bbox_to_anchor=(1.01, 1.0),
                  borderaxespad=0.0, frameon=False, fontsize=7.5)
    return ax


__all__ = ["plot_overlaps", "plot_gram", "plot_losses", "plot_comparison", "plot_online_baseline",
           "save_figure", "style"]


def _edges(c, log: bool):
    """Cell edges around the centres ``c``: midpoints (geometric on a log axis)."""
    c = np.asarray(c, dtype=np.float64)
    if len(c) == 1:
        return np.array([c[0] * 0.9, c[0] * 1.1]) if log else np.array([c[0] - 0.5, c[0] + 0.5])
    u = np.log(c) if log else c
    mid = 0.5 * (u[1:] + u[:-1])
    e = np.concatenate([[2 * u[0] - mid[0]], mid, [2 * u[-1] - mid[-1]]])
    return np.exp(e) if log else e


def plot_sweep(result, observable: str = "m_norm", step: int | None = None, ax=None,
               sims=None):
    """A phase diagram: ``observable`` at ``step`` (default: the last) over the grid.

    Two axes: a heat map (first axis vertical, second horizontal; log-spaced axes drawn on a
    log scale). One axis: a line with a ±SE band. ``sims``: optional simulation points, a list of
    ``(coordinates dict, Estimate)`` drawn as markers (one axis) or annotated squares (two).
    ``result`` is a :class:`dmft.sweep.SweepResult` or a sweep file path.
    """
    if isinstance(result, (str, os.PathLike)):
        from .io import load_sweep

        result = load_sweep(result)
    step = len(result.step) - 1 if step is None else step
    est = result.observable(observable, step)
    table = {**OBSERVABLES, **OPTIONAL, **DERIVED}
    label = table[observable].label if observable in table else observable
    coords = [np.asarray(c) for c in result.coords]
    if any(c.ndim != 1 for c in coords) or len(coords) > 2:
        raise ValueError("plot_sweep needs one or two axes with scalar values")

    def logish(c):
        return len(c) > 2 and np.all(c > 0) and np.ptp(np.diff(np.log(c))) < 1e-6

    with style():
        fig, ax, _ = _axes(ax)
        if len(coords) == 1:
            x = coords[0]
            ax.plot(x, est.value, color=_COLORS[0], label="DMFT")
            ax.fill_between(x, est.value - est.error, est.value + est.error, color=_COLORS[0],
                            alpha=0.25, lw=0)
            for c, e in sims or []:
                ax.errorbar([c[result.axes[0]]], [e.value], [e.error], fmt="o",
                            color=_COLORS[1], ms=4, capsize=2)
            if logish(x):
                ax.set_xscale("log")
            ax.set_xlabel(result.axes[0])
            ax.set_ylabel(f"{label} at t = {step}")
        else:
            y, x = coords
            mesh = ax.pcolormesh(_edges(x, logish(x)), _edges(y, logish(y)), est.value,
                                 shading="flat", cmap="viridis")
            fig.colorbar(mesh, ax=ax, label=f"{label} at t = {step}")
            for c, e in sims or []:
                ax.plot(c[result.axes[1]], c[result.axes[0]], "s", mfc="none", mec="w", ms=9)
                ax.annotate(f"sim {e.value:.3f}±{e.error:.3f}",
                            (c[result.axes[1]], c[result.axes[0]]), color="w", fontsize=7,
                            xytext=(4, 4), textcoords="offset points")
            if logish(x):
                ax.set_xscale("log")
            if logish(y):
                ax.set_yscale("log")
            ax.set_xlabel(result.axes[1])
            ax.set_ylabel(result.axes[0])
        ax.set_title(f"{result.problem.target.name}, {result.problem.schedule}, "
                     f"{result.method}")
    return fig
