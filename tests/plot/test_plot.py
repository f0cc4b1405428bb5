"""Figures: panels, file paths accepted, no global matplotlib state changed."""

from __future__ import annotations

import matplotlib
import matplotlib.pyplot as plt
from _fakes import fake_trajectory

from dmft import io


def test_plot_comparison_panels_and_rcparams(tmp_path):
    before = dict(matplotlib.rcParams)
    from dmft.plot import plot_comparison, plot_overlaps, save_figure

    th, sim = tmp_path / "th.h5", tmp_path / "sim.h5"
    io.save(fake_trajectory("dmft", steps=3), th)
    io.save(fake_trajectory("simulation", steps=3, shift=1e-3), sim)
    fig = plot_comparison(th, sim)  # paths are accepted
    axes = fig.get_axes()
    assert len(axes) == 3
    assert "m_{ji}" in axes[0].get_ylabel() and "Q_{jl}" in axes[1].get_ylabel()
    assert [t.get_text() for t in axes[2].get_legend().get_texts()][0].startswith("test")
    assert len(fig.legends) == 1  # DMFT lines vs simulation markers
    out = save_figure(fig, tmp_path / "fig.png", dpi=150)
    assert (tmp_path / "fig.png").stat().st_size > 10_000 and out.endswith("fig.png")
    assert [p.name for p in tmp_path.iterdir() if ".tmp-" in p.name] == []
    plt.close(fig)

    fig2, ax = plt.subplots()
    assert plot_overlaps(fake_trajectory("dmft", steps=2), ax=ax) is ax
    assert len(ax.get_lines()) >= 4  # p·k = 4 overlap curves (+ the zero line)
    plt.close(fig2)
    assert dict(matplotlib.rcParams) == before


def test_flow_is_drawn_against_tau_and_labelled_as_flow():
    import dataclasses

    from dmft.plot import plot_comparison, plot_overlaps

    dm = fake_trajectory("dmft", steps=4)
    flow = dataclasses.replace(dm, kind="flow", step=0.25 * dm.step, kernels=None)
    assert flow.time.name == "tau" and dm.time.name == "step"
    fig, ax = plt.subplots()
    plot_overlaps(flow, fake_trajectory("simulation", steps=4), ax=ax)
    assert "tau" in ax.get_xlabel() and "gradient flow" in ax.get_xlabel()
    assert ax.get_xlim()[0] == 0.0
    plt.close(fig)
    fig = plot_comparison(flow, fake_trajectory("simulation", steps=4))
    labels = [t.get_text() for t in fig.legends[0].get_texts()]
    assert labels[0].startswith("gradient flow") and labels[1].startswith("simulation")
    plt.close(fig)
