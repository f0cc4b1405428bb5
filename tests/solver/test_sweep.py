"""dmft.sweep and traced hyper-parameters: a new number never recompiles; a grid point equals
the solve of that point with the same seed; files, xarray and plots of a sweep."""

import numpy as np
import pytest

import dmft
from dmft import DMFTInputError, make_problem
from dmft.simulator import TRACE_COUNT as SIM_TRACES
from dmft.solver import TRACE_COUNT as DMFT_TRACES

SAMPLES, REPLICAS = 6000, 4
# small samples at tiny T: the noisy-response warning is expected and not what is tested here
pytestmark = pytest.mark.filterwarnings("ignore:the response:RuntimeWarning")


def test_new_numbers_do_not_recompile_the_solver():
    """α, η_t, λ, Δ, m₀, Q⊥₀, a and η_a changed one by one: the sweep is traced once."""
    base = dict(target="he3", p=2, steps=3, lr=0.3, alpha=2.0)
    dmft.solve(make_problem(**base), SAMPLES, replicas=REPLICAS, progress=False)
    before = DMFT_TRACES[0]
    variants = [dict(alpha=3.0, lr=[0.1, 0.2, 0.4]), dict(ridge=0.1, noise=0.2, m0=0.05),
                dict(qperp0=0.8, second_layer=[0.5, 0.3], lr_a=0.05)]
    for v in variants:
        dmft.solve(make_problem(**{**base, **v}), SAMPLES, replicas=REPLICAS, progress=False)
    assert DMFT_TRACES[0] == before
    # a structural change (steps) does recompile: the counter can move
    dmft.solve(make_problem(**{**base, "steps": 2}), SAMPLES, replicas=REPLICAS, progress=False)
    assert DMFT_TRACES[0] == before + 1


def test_new_numbers_do_not_recompile_the_simulator():
    base = dict(target="he3", p=2, steps=3, lr=0.3, alpha=2.0)
    dmft.simulate(make_problem(**base), d=60, seeds=2, progress=False)
    before = SIM_TRACES[0]
    for v in (dict(lr=0.5), dict(ridge=0.1), dict(noise=0.3), dict(m0=0.1), dict(lr_a=0.1)):
        dmft.simulate(make_problem(**{**base, **v}), d=60, seeds=2, progress=False)
    assert SIM_TRACES[0] == before


@pytest.fixture(scope="module")
def grid():
    pr = make_problem("tanh_he3", p=2, steps=3, lr=0.2)
    over = {"lr": [0.1, 0.4], "alpha": [2.0, 3.0, 5.0]}
    return pr, over, dmft.sweep(pr, over, SAMPLES, replicas=REPLICAS, seed=7, progress=False)


def test_sweep_point_equals_solve(grid):
    """Every grid point equals dmft.solve of that point with the same seed (float64)."""
    pr, over, res = grid
    assert res.shape == (2, 3) and res.m.value.shape == (2, 3, 4, 2, 2)
    for i, lr in enumerate(over["lr"]):
        for j, alpha in enumerate(over["alpha"]):
            tr = dmft.solve(make_problem("tanh_he3", p=2, steps=3, lr=lr, alpha=alpha),
                            SAMPLES, replicas=REPLICAS, seed=7, progress=False)
            for name in ("m", "Q", "test_error", "train_loss"):
                np.testing.assert_allclose(getattr(res, name).value[i, j],
                                           getattr(tr, name).value, rtol=1e-12, atol=1e-13)
                np.testing.assert_allclose(getattr(res, name).error[i, j],
                                           getattr(tr, name).error, rtol=1e-9, atol=1e-13)


@pytest.mark.slow
def test_sweep_grid_batches_and_schedules(grid, monkeypatch):
    """When memory is short the grid is split into batches (the last padded to the same
    shape), which changes nothing; a per-step η schedule is an axis value."""
    from dmft.solver import _memory, memory_estimate

    pr, over, res = grid
    need4 = memory_estimate(pr, SAMPLES, replicas=REPLICAS, grid=4)["peak"]
    monkeypatch.setattr(_memory, "free_memory_bytes", lambda: (need4 + 1, "test device"))
    res2 = dmft.sweep(pr, over, SAMPLES, replicas=REPLICAS, seed=7, progress=False)
    monkeypatch.undo()
    assert res2.settings["grid_batch"] == 3  # 6 points: 6 does not fit, 3 does
    np.testing.assert_allclose(res2.m.value, res.m.value, rtol=1e-12, atol=1e-14)
    sched = dmft.sweep(pr, {"lr": [[0.1, 0.1, 0.1], [0.4, 0.4, 0.4]]}, SAMPLES,
                       replicas=REPLICAS, seed=7, progress=False)
    np.testing.assert_allclose(sched.m.value, res.m.value[:, 1], rtol=1e-12, atol=1e-14)


def test_common_random_numbers(grid):
    """Neighbouring points share their samples: the replica spread of a difference between
    two close learning rates is far below the spread of the points themselves."""
    pr = make_problem("tanh_he3", p=2, steps=3, lr=0.2)
    res = dmft.sweep(pr, {"lr": [0.20, 0.21]}, SAMPLES, replicas=REPLICAS, seed=3,
                     progress=False)
    a, b = (res.points[i] for i in range(2))
    # per-replica arrays are not kept in a sweep: use the solve with keep_replicas
    ra = dmft.solve(a.problem, SAMPLES, replicas=REPLICAS, seed=3, keep_replicas=True,
                    progress=False).per_seed["m"][:, -1, 0, 1]
    rb = dmft.solve(b.problem, SAMPLES, replicas=REPLICAS, seed=3, keep_replicas=True,
                    progress=False).per_seed["m"][:, -1, 0, 1]
    assert np.std(rb - ra) < 0.2 * np.std(ra)


def test_sweep_rejects_bad_axes():
    pr = make_problem("he3", steps=3)
    with pytest.raises(DMFTInputError, match="over key"):
        dmft.sweep(pr, {"steps": [1, 2]}, SAMPLES, replicas=REPLICAS)
    with pytest.raises(DMFTInputError, match=r"lr\[0\]"):
        dmft.sweep(pr, {"lr": [0.1, -0.2]}, SAMPLES, replicas=REPLICAS)
    with pytest.raises(DMFTInputError, match=r"shape \(3,\)"):
        dmft.sweep(pr, {"lr": [[0.1, 0.2]]}, SAMPLES, replicas=REPLICAS)
    with pytest.raises(DMFTInputError, match="`d` is required"):
        dmft.sweep(pr, {"lr": [0.1]}, method="simulate")
    with pytest.raises(DMFTInputError, match="`over`"):
        dmft.sweep(pr, {}, SAMPLES)


def test_sweep_simulate_matches_simulate():
    pr = make_problem("he3", p=2, steps=2, lr=0.3, alpha=2.0)
    res = dmft.sweep(pr, {"ridge": [0.0, 0.2]}, method="simulate", d=80, seeds=2, seed=4,
                     progress=False)
    one = dmft.simulate(make_problem("he3", p=2, steps=2, lr=0.3, alpha=2.0, ridge=0.2),
                        d=80, seeds=2, seed=4, progress=False)
    assert res.method == "simulation"
    np.testing.assert_allclose(res.Q.value[1], one.Q.value, rtol=1e-12)


def test_sweep_file_roundtrip_xarray_and_plot(grid, tmp_path):
    """One HDF5 file: grid dims in front, coordinates in grid/<name>, named dims in xarray."""
    xr = pytest.importorskip("xarray")
    from dmft.io import load_sweep, save_sweep
    from dmft.plot import plot_sweep

    _, over, res = grid
    path = save_sweep(res, tmp_path / "sweep.h5")
    back = load_sweep(path)
    assert back.axes == ["lr", "alpha"]
    np.testing.assert_array_equal(back.coords[1], over["alpha"])
    np.testing.assert_array_equal(back.m.value, res.m.value)
    np.testing.assert_array_equal(back.test_error.error, res.test_error.error)
    ds = xr.open_dataset(path, engine="h5netcdf", group="m")
    assert ds["value"].dims == ("lr", "alpha", "step", "unit", "target_dir")
    assert ds["value"].shape == (2, 3, 4, 2, 2)
    ds.close()
    fig = plot_sweep(path, "m_norm", step=3)
    assert len(fig.axes) == 2  # heat map and colour bar
    norm = back.observable("m_norm", 3)
    np.testing.assert_allclose(norm.value, np.linalg.norm(res.m.value[:, :, 3], axis=(-2, -1)))
    line = dmft.sweep(make_problem("tanh_he3", p=2, steps=3, lr=0.2), {"lr": [0.1, 0.2, 0.4]},
                      SAMPLES, replicas=REPLICAS, seed=7, progress=False)
    fig = plot_sweep(line, "test_error")
    assert len(fig.axes) == 1


def test_io_load_points_a_sweep_file_to_load_sweep(grid, tmp_path):
    from dmft.io import load, save_sweep

    path = save_sweep(grid[2], tmp_path / "s.h5")
    with pytest.raises(DMFTInputError, match="load_sweep"):
        load(path)


@pytest.mark.slow
def test_sweep_over_the_minibatch_fraction():
    """b of sgd:b is a number: one compiled grid, each point equal to its own solve."""
    pr = make_problem("he3", p=2, steps=3, lr=0.5, alpha=2.0, schedule="sgd:0.5")
    res = dmft.sweep(pr, {"batch_fraction": [0.25, 1.0]}, SAMPLES, replicas=REPLICAS, seed=2,
                     progress=False)
    for i, b in enumerate((0.25, 1.0)):
        one = dmft.solve(make_problem("he3", p=2, steps=3, lr=0.5, alpha=2.0,
                                      schedule=f"sgd:{b}"), SAMPLES, replicas=REPLICAS,
                         seed=2, progress=False)
        np.testing.assert_allclose(res.Q.value[i], one.Q.value, rtol=1e-12, atol=1e-14)
    with pytest.raises(DMFTInputError, match="batch_fraction"):
        dmft.sweep(make_problem("he3", steps=3), {"batch_fraction": [0.5]}, SAMPLES,
                   replicas=REPLICAS)


def test_sweep_over_momentum():
    """β is a number: one compiled grid over it, each point equal to its own solve, β = 0 to
    plain GD's."""
    pr = make_problem("he3", p=2, steps=3, lr=0.5, alpha=2.0)
    res = dmft.sweep(pr, {"momentum": [0.0, 0.6]}, SAMPLES, replicas=REPLICAS, seed=2,
                     progress=False)
    for i, b in enumerate((0.0, 0.6)):
        one = dmft.solve(make_problem("he3", p=2, steps=3, lr=0.5, alpha=2.0, momentum=b),
                         SAMPLES, replicas=REPLICAS, seed=2, progress=False)
        np.testing.assert_allclose(res.Q.value[i], one.Q.value, rtol=1e-12, atol=1e-14)
    assert np.max(np.abs(res.Q.value[1] - res.Q.value[0])) > 4 * np.max(res.Q.error)
