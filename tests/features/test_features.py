"""Wide networks after giant steps (dmft.features) and the RF closed form (dmft.rf_test_error).

Reference systems (tests/README.md): the Hermite coefficients of ReLU and erf in closed form;
the Marchenko–Pastur moments; ridge solved directly; the GD step against jax.grad; the closed
form against the simulation at small d with k·SE + a finite-d allowance.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _fakes import one_line_error

from dmft import DMFTInputError, io
from dmft.baselines import marchenko_pastur_rule
from dmft.cli import main
from dmft.features._rf_theory import (
    hermite_coefficients,
    rf_test_error,
    target_coefficients,
)
from dmft.features._simulate import (
    FeaturesConfig,
    _readout,
    gd_step,
    network,
    simulate_features,
    wasserstein1,
)
from dmft.model import get_activation

# --------------------------------------------------------------------------------------------
# Closed form ingredients
# --------------------------------------------------------------------------------------------


def test_hermite_coefficients_exact():
    relu = hermite_coefficients("relu")
    assert relu["mu0"] == pytest.approx(1 / math.sqrt(2 * math.pi), abs=1e-13)
    assert relu["mu1"] == pytest.approx(0.5, abs=1e-13)
    assert relu["mustar2"] == pytest.approx(0.5 - 1 / (2 * math.pi) - 0.25, abs=1e-13)
    assert relu["mu2"] == pytest.approx(1 / (2 * math.sqrt(math.pi)), abs=1e-13)
    erf = hermite_coefficients("erf")  # σ = erf(h/√2): E σ² = (2/π) arcsin(1/2) = 1/3
    assert erf["mu0"] == pytest.approx(0.0, abs=1e-14)
    assert erf["mu1"] == pytest.approx(1 / math.sqrt(math.pi), abs=1e-13)
    assert erf["mustar2"] == pytest.approx(1 / 3 - 1 / math.pi, abs=1e-13)


def test_target_coefficients():
    he2 = target_coefficients("he2")
    assert he2["F2"] == pytest.approx(0.0, abs=1e-14)
    assert he2["Ey2"] == pytest.approx(1.0, abs=1e-12)
    lin = target_coefficients("linear", noise=0.3)
    assert lin["F2"] == pytest.approx(1.0, abs=1e-12)
    assert lin["tau2"] == pytest.approx(0.3, abs=1e-12)


@pytest.mark.parametrize("gamma", [0.25, 1.0, 2.5])
def test_marchenko_pastur_moments(gamma):
    a, w = marchenko_pastur_rule(gamma, 400, small_side=True)
    assert w.sum() == pytest.approx(1.0, abs=1e-13)
    assert w @ a == pytest.approx(1.0, abs=1e-10)
    assert w @ a**2 == pytest.approx(1.0 + gamma, abs=1e-10)


def test_closed_form_limits():
    lam = np.array([1e3, 1e5])
    big = rf_test_error(1.0, 2.0, lam, "relu", "tanh_he3")
    ey2 = target_coefficients("tanh_he3")["Ey2"]
    # λ → ∞: the readout predicts 0, error E y²/2 (to O(1/λ))
    np.testing.assert_allclose(big["test_error"], 0.5 * ey2, rtol=2e-2)
    assert abs(big["test_error"][1] - 0.5 * ey2) < 1e-4
    # pure noise (he2 has no linear part): error ≥ E y²/2 for every λ
    he2 = rf_test_error(1.0, 2.0, np.geomspace(1e-3, 10, 9), "relu", "he2")
    assert np.all(he2["test_error"] >= 0.5 - 1e-12)
    # the interpolation peak: at small λ the error is largest at κ = α₁
    peak = [rf_test_error(k, 1.0, 1e-4, "relu", "linear")["test_error"] for k in (0.5, 1, 2)]
    assert peak[1] > 5 * max(peak[0], peak[2])


# --------------------------------------------------------------------------------------------
# Pieces of the simulator
# --------------------------------------------------------------------------------------------


def test_gd_step_is_minus_eta_sqrt_p_grad():
    act = get_activation("tanh")
    key = jax.random.key(3)
    p, d, n = 6, 9, 11
    W = jax.random.normal(jax.random.fold_in(key, 0), (p, d)) / 3
    a = jnp.where(jnp.arange(p) % 2 == 0, 1.0, -1.0) / math.sqrt(p)
    x = jax.random.normal(jax.random.fold_in(key, 1), (n, d))
    y = jax.random.normal(jax.random.fold_in(key, 2), (n,))

    def loss(W):
        return 0.5 * jnp.mean((y - network(act, W, a, x)) ** 2)

    eta = 0.7
    expected = W - eta * math.sqrt(p) * jax.grad(loss)(W)
    np.testing.assert_allclose(gd_step(act, W, a, x, y, eta), expected, rtol=1e-12, atol=1e-14)


@pytest.mark.parametrize("n1", [40, 15])  # p <= n1 (primal) and p > n1 (dual)
def test_readout_is_ridge(n1):
    act = get_activation("relu")
    key = jax.random.key(1)
    p, d, k = 20, 12, 2
    W = jax.random.normal(jax.random.fold_in(key, 0), (p, d)) / math.sqrt(d)
    x1 = jax.random.normal(jax.random.fold_in(key, 1), (n1, d))
    x2 = jax.random.normal(jax.random.fold_in(key, 2), (30, d))
    y1, y2 = jnp.tanh(x1[:, 0]), jnp.tanh(x2[:, 0])
    ridges = jnp.array([0.05, 0.5])
    eig, top, overlap, train, test = _readout(act, W, x1, y1, x2, y2, ridges, k)
    from dmft.features._simulate import _centred

    F, Ft = np.asarray(_centred(act, W, x1)), np.asarray(_centred(act, W, x2))
    S = F.T @ F / n1
    np.testing.assert_allclose(np.sort(eig), np.linalg.eigvalsh(S), atol=1e-11)
    for i, lam in enumerate(np.asarray(ridges)):
        a = np.linalg.solve(S + lam * np.eye(p), F.T @ np.asarray(y1) / n1)
        want_train = float(0.5 * np.mean((np.asarray(y1) - F @ a) ** 2))
        want_test = float(0.5 * np.mean((np.asarray(y2) - Ft @ a) ** 2))
        assert float(train[i]) == pytest.approx(want_train, rel=1e-9)
        assert float(test[i]) == pytest.approx(want_test, rel=1e-9)
    assert overlap.shape == (3, k) and np.all(overlap <= 1 + 1e-12)


def test_wasserstein1():
    a = np.array([0.0, 1.0, 2.0])
    assert wasserstein1(a, a[::-1]) == 0.0
    assert wasserstein1(a, a + 0.5) == pytest.approx(0.5)
    with pytest.raises(DMFTInputError, match="same shape"):
        wasserstein1(a, a[:2])


# --------------------------------------------------------------------------------------------
# Statistical checks at small d
# --------------------------------------------------------------------------------------------

K_SE = 4.0  # |z| threshold


@pytest.mark.parametrize("kappa", [0.5, 1.0, 2.0])
def test_rf_matches_closed_form(kappa):
    """Step 0 at d = 200, α₁ = 1 (κ = 1 is the interpolation peak), 6 seeds.

    Tolerance: 4 SE (seeds) plus a finite-d allowance of 6/d relative to the error. In the
    d-extrapolated validation study (validation/results/features_step0.json, 12 points) the
    largest |e(d=250) − e_theory| / e_theory was 4.3/d (noise included), so 6/d is ~1.4 times
    the largest deviation seen.
    """
    ridges = (0.03, 0.3, 3.0)
    res = simulate_features(target="tanh_he3", activation="relu", d=200, kappa=kappa,
                            alpha1=1.0, steps=0, ridges=ridges, seeds=6, seed=11,
                            progress=False)
    th = rf_test_error(kappa, 1.0, np.array(ridges), "relu", "tanh_he3")
    for name in ("test_error", "train_error"):
        est = res.estimate(f"rf/{name}")
        tol = K_SE * est.error + 6.0 / 200 * th[name]
        assert np.all(np.abs(est.value - th[name]) < tol), (name, est, th[name])
    np.testing.assert_allclose(res.theory["test_error"], th["test_error"], rtol=1e-12)


@pytest.fixture(scope="module")
def step_run():
    return simulate_features(target="tanh_he3", activation="relu", d=128, kappa=1.0,
                             alpha0=2.0, alpha1=2.0, lr=1.0, steps=1, ridges=(0.1, 1.0),
                             seeds=6, seed=5, progress=False)


def test_giant_step_beats_random_features_and_matches_spiked(step_run):
    r = step_run
    gain = r.paired("rf/test_error", "step/test_error")  # same data, paired over seeds
    assert gain.value[1] > 4 * gain.error[1] and gain.value[1] > 0.01, gain
    diff = r.paired("step/test_error", "spiked/test_error")
    assert np.all(np.abs(diff.value) < 4 * diff.error + 2e-3), diff
    # an outlier above the bulk carrying the target's first direction; none at init
    assert np.all(r.per_seed["step/n_outliers"] >= 1)
    assert np.all(r.per_seed["rf/n_outliers"] == 0)
    ov = r.estimate("step/overlap").value[-1]  # top eigenvector
    assert ov[0] > 0.3 and r.estimate("rf/overlap").value[-1][0] < 0.2
    # spectra: spiked equivalent much closer to the trained features than the initial ones
    assert r.estimate("w1_step_spiked").value < 0.3 * r.estimate("w1_step_rf").value


def test_same_seed_same_result_and_seed_matters():
    # the configuration of `dmft features --quick --ridges 0.1,1` (one compilation for both)
    kw = dict(target="tanh_he3", d=64, n_test=256, ridges=(0.1, 1.0), progress=False)
    a = simulate_features(seeds=2, seed=3, **kw)
    b = simulate_features(seeds=2, seed=3, **kw)
    c = simulate_features(seeds=2, seed=4, **kw)
    for name in a.per_seed:
        np.testing.assert_array_equal(a.per_seed[name], b.per_seed[name])
    assert not np.array_equal(a.per_seed["step/test_error"], c.per_seed["step/test_error"])
    # seed index s gives the same draw whatever the number of seeds
    d3 = simulate_features(seeds=3, seed=3, **kw)
    np.testing.assert_array_equal(d3.per_seed["step/eigenvalues"][:2],
                                  a.per_seed["step/eigenvalues"])


# --------------------------------------------------------------------------------------------
# Bad input, files, CLI
# --------------------------------------------------------------------------------------------


@pytest.mark.parametrize("kw,name", [
    (dict(kappa=5.0), "kappa"),
    (dict(kappa=0.1), "kappa"),
    (dict(alpha1=0.0), "alpha1"),
    (dict(alpha0=-1.0), "alpha0"),
    (dict(ridges=(0.1, -1.0)), "ridges"),
    (dict(ridges=()), "ridges"),
    (dict(lr_scaling="sqrt_d"), "lr_scaling"),
    (dict(batch="sgd"), "batch"),
    (dict(steps=-1), "steps"),
    (dict(target="nope"), "target"),
    (dict(activation="gelu"), "activation"),
    (dict(d=10), "d"),
    (dict(d=90_000), "d"),
    (dict(spike_rank=-1), "spike_rank"),
])
def test_bad_input_names_parameter(kw, name):
    with pytest.raises(DMFTInputError, match=f"`{name}`"):
        FeaturesConfig(**kw)


def test_bad_run_arguments():
    with pytest.raises(DMFTInputError, match="`seeds`"):
        simulate_features(d=40, seeds=0)
    with pytest.raises(DMFTInputError, match="`seed`"):
        simulate_features(d=40, seed=-2)
    with pytest.raises(DMFTInputError, match="`ridge`"):
        rf_test_error(1.0, 1.0, [0.0])
    with pytest.raises(DMFTInputError, match="`activation`"):
        rf_test_error(1.0, 1.0, [0.1], activation="linear")
    with pytest.raises(DMFTInputError, match="`target`"):
        rf_test_error(1.0, 1.0, [0.1], target="staircase3x")


def test_file_round_trip_and_cli(tmp_path, capsys):
    out, fig = tmp_path / "f.h5", tmp_path / "f.png"
    code = main(["features", "--quick", "--seeds", "2", "--ridges", "0.1,1", "--out", str(out),
                 "--figure", str(fig), "--no-progress"])
    printed = capsys.readouterr().out
    assert code == 0 and out.exists() and fig.stat().st_size > 10_000
    assert "rf closed form" in printed and "W1(step, spiked spectra)" in printed
    back = io.load(out)  # io.load dispatches on the file's format
    assert back.config.d == 64 and back.seeds == 2 and back.maps == ("rf", "step", "spiked")
    again = simulate_features(back.config, seeds=2, seed=0, progress=False)
    for name, arr in again.per_seed.items():
        np.testing.assert_array_equal(back.per_seed[name], arr)
    np.testing.assert_array_equal(back.theory["test_error"], again.theory["test_error"])
    import h5py

    with h5py.File(out, "r+") as f:
        assert f.attrs["format"] == "dmft-features" and list(f.attrs["format_version"]) == [1, 1]
        assert f.attrs["kind"] == "features"
        assert [d.label for d in f["step/test_error/per_seed"].dims] == ["seed", "ridge"]
        np.testing.assert_array_equal(f["ridge"][()], [0.1, 1.0])
        f.attrs["format_version"] = np.array([2, 0])
    with pytest.raises(DMFTInputError, match="2.0"):
        io.load(out)
    code = main(["features", "--d", "50", "--kappa", "9", "--out", str(out)])
    err = capsys.readouterr().err
    assert code == 1 and "`kappa`" in err and "Traceback" not in err


# --------------------------------------------------------------------------------------------
# Refusals: one seed (no standard error) and a run that overflows
# --------------------------------------------------------------------------------------------


def test_one_seed_is_refused(tmp_path, capsys):
    with pytest.raises(DMFTInputError, match=r"`seeds` must be >= 2: the standard errors"):
        simulate_features(d=16, steps=0, seeds=1, progress=False)
    out = tmp_path / "f.h5"
    code = main(["features", "--quick", "--seeds", "1", "--out", str(out), "--no-progress"])
    cap = capsys.readouterr()
    assert code == 1 and cap.out == ""  # before the config print
    one_line_error(cap.err, "`--seeds` must be >= 2", "standard errors", "--seeds=1",
                   "nothing written")
    assert not out.exists()


def test_overflowing_step_is_a_divergence_naming_the_step(tmp_path, capsys):
    from dmft import DivergenceError

    with pytest.raises(DivergenceError) as info:
        simulate_features(d=16, steps=2, seeds=2, lr=1e300, ridges=(1.0,), progress=False)
    assert info.value.step == 1
    assert "weight matrix after GD step 1 of 2" in str(info.value)
    out = tmp_path / "f.h5"
    code = main(["features", "--quick", "--lr", "1e300", "--out", str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    one_line_error(err, "run diverged at step 1", "weight matrix after GD step 1",
                   "lr=1e+300", "nothing written")
    assert "invalid value" not in err and not out.exists()
    # a readout error that overflows, with no step at all: step 0, the map named
    code = main(["features", "--quick", "--steps", "0", "--label-noise", "1e305", "--out",
                 str(out), "--no-progress"])
    err = capsys.readouterr().err
    assert code == 1
    one_line_error(err, "run diverged at step 0", "of the 'rf' features", "noise=1e+305")
    assert not out.exists()
