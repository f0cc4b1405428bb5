"""The d → ∞ theory after one giant step (dmft.features_theory).

Exact references: at lr = 0 it is the random-features closed form (rf_test_error); for the ReLU
with a ±1 second layer the spike functions are known in closed form (M₊ − M₋ = rζ, and
M₊ + M₋ from E|N(μ, c)|), which gives the outlier positions r²/4 and E[M_e²], the λ → ∞ limit
(E y² − F⁴/‖v‖²)/2 for odd targets, and the bulk row norm c = 1 + lr² E y²/(4α₀); as κ → 0 the
bulk fits nothing and the error tends to the same spike-only limit. Against the simulator: a
small-d check with a tolerance of 4 combined standard errors plus a finite-d allowance.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np
import pytest
from _fakes import one_line_error

from dmft import DMFTInputError, io
from dmft.cli import main
from dmft.features import (
    FeaturesConfig,
    features_theory,
    rf_test_error,
    simulate_features,
    target_coefficients,
)
from dmft.features._theory import _solve

RIDGES = (0.01, 0.1, 1.0, 10.0)


@pytest.mark.parametrize(("activation", "target", "kappa", "alpha1", "second_layer"), [
    ("relu", "tanh_he3", 1.0, 2.0, "sign"),
    ("erf", "he2", 0.5, 1.0, "sign"),
    ("tanh", "z1_plus_he3", 2.0, 0.7, "sign"),
    ("relu", "staircase2", 1.0, 1.0, "gaussian"),
])
def test_lr_zero_is_the_random_features_closed_form(activation, target, kappa, alpha1,
                                                     second_layer):
    c = FeaturesConfig(target=target, activation=activation, kappa=kappa, alpha1=alpha1, lr=0.0,
                       ridges=RIDGES, second_layer=second_layer, d=100)
    th = features_theory(c)
    rf = rf_test_error(kappa, alpha1, np.array(RIDGES), activation, target)
    np.testing.assert_allclose(th.test_error, rf["test_error"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(th.train_error, rf["train_error"], rtol=0, atol=1e-10)
    np.testing.assert_allclose(th.top_over_p, 0.0, atol=1e-14)  # no spike without a step


def _relu_closed_form(target, lr, alpha0, noise=0.0):
    tc = target_coefficients(target, noise)
    ey2 = tc["Ey2"] + noise
    v2 = tc["F2"] + ey2 / alpha0
    r = lr * 0.5 * math.sqrt(v2)
    c = 1.0 + lr**2 * ey2 * 0.25 / alpha0  # Var σ'(G) = 1/4 for the ReLU
    return tc, ey2, v2, r, c


def _abs_mean(mu, c):
    """E|X| for X ~ N(μ, c)."""
    s = math.sqrt(c)
    return (s * math.sqrt(2 / math.pi) * np.exp(-mu**2 / (2 * c))
            + mu * np.vectorize(math.erf)(mu / (s * math.sqrt(2))))


@pytest.mark.parametrize(("target", "lr", "alpha0"), [("tanh_he3", 1.0, 2.0),
                                                     ("z1_plus_he3", 2.0, 1.0)])
def test_relu_sign_spikes_overlaps_and_bulk_norm_in_closed_form(target, lr, alpha0):
    th = features_theory(FeaturesConfig(target=target, lr=lr, alpha0=alpha0, ridges=RIDGES))
    tc, ey2, v2, r, c = _relu_closed_form(target, lr, alpha0)
    # even part M_e(ζ) = (E|√c g + rζ| − E|N(0, c + r²)|)/2, by an independent rule in ζ
    x, w = np.polynomial.hermite_e.hermegauss(120)
    w = w / w.sum()
    me = (_abs_mean(r * x, c) - _abs_mean(0.0, c + r * r)) / 2
    expected = sorted([r * r / 4, float(w @ me**2)], reverse=True)
    np.testing.assert_allclose(th.top_over_p, expected, rtol=1e-8)
    np.testing.assert_allclose(th.overlap[0], np.abs(tc["c1"]) / math.sqrt(v2), rtol=1e-10)
    assert np.all(np.isnan(th.overlap[1]))  # the even outlier's direction is random
    np.testing.assert_allclose(th.top, np.sort(expected) * th.config.p, rtol=1e-8)
    assert "features_theory: " + target in str(th)
    np.testing.assert_allclose(th.parameters["c_class"], c, rtol=1e-10)
    np.testing.assert_allclose(th.parameters["r"], r, rtol=1e-10)


@pytest.mark.parametrize("target", ["tanh_he3", "z1_plus_he3"])
def test_large_ridge_limit_is_the_spike_fit(target):
    """λ → ∞ (at d = ∞ the spikes stay unpenalised): E y² minus what M₊ − M₋ = rζ explains,
    F⁴/‖v‖² for an odd target (M₊ + M₋ is even in ζ and explains nothing)."""
    lams = (1e4, 1e6)
    th = features_theory(FeaturesConfig(target=target, lr=1.0, ridges=lams))
    tc, ey2, v2, r, c = _relu_closed_form(target, 1.0, 2.0)
    limit = 0.5 * (ey2 - tc["F2"] ** 2 / v2)
    err = np.abs(th.test_error - limit)
    assert err[1] < 1e-6 and err[1] < err[0] / 50  # converges like 1/λ
    np.testing.assert_allclose(th.train_error[1], limit, atol=1e-6)


def test_small_kappa_limit_is_the_spike_fit():
    """κ → 0 (a vanishing bulk): the readout is the spike fit alone, at every λ."""
    c = FeaturesConfig(target="tanh_he3", lr=1.0, ridges=RIDGES)
    tc, ey2, v2, r, _ = _relu_closed_form("tanh_he3", 1.0, 2.0)
    limit = 0.5 * (ey2 - tc["F2"] ** 2 / v2)
    errs = []
    for kappa in (1e-3, 1e-5):
        small = _Config(**{**dataclasses.asdict(c), "kappa": kappa})
        errs.append(np.max(np.abs(_solve(small, 1.0)["test_error"] - limit)))
    assert errs[1] < 1e-6 and errs[1] < errs[0] / 50  # linear in κ


@dataclasses.dataclass
class _Config:
    """FeaturesConfig's fields without its range checks (κ below the simulator's range)."""

    target: str
    activation: str
    d: int
    kappa: float
    alpha0: float
    alpha1: float
    lr: float
    lr_scaling: str
    steps: int
    batch: str
    ridges: tuple
    noise: float
    spike_rank: int
    n_test: int
    outlier_margin: float
    samples_exponent: float
    second_layer: str

    @property
    def p(self):
        return max(1, round(self.kappa * self.d))


def test_finite_p_correction_vanishes_with_p_and_quadrature_errors_are_small():
    th_small = features_theory(FeaturesConfig(target="tanh_he3", d=100, ridges=RIDGES))
    th_big = features_theory(FeaturesConfig(target="tanh_he3", d=10_000, ridges=RIDGES))
    np.testing.assert_allclose(th_small.test_error, th_big.test_error, rtol=1e-12)
    gap_small = th_small.test_error_at_p - th_small.test_error
    gap_big = th_big.test_error_at_p - th_big.test_error
    assert np.all(gap_small >= 0) and gap_small[-1] > 1e-3  # λ = 10 against p·θ ≈ 3.4
    np.testing.assert_allclose(gap_big[-1], gap_small[-1] * (3.36 + 10) ** 2 / (336 + 10) ** 2,
                               rtol=0.05)  # (ρ/(pθ + ρ))² with ρ ≈ λ at this κ/α₁
    for v in th_big.error.values():
        assert np.all(v < 1e-6)


@pytest.mark.parametrize(("bad", "match"), [
    (dict(steps=2), "steps"), (dict(steps=0), "steps"), (dict(lr_scaling="const"), "lr_scaling"),
    (dict(activation="linear"), "`activation` must be non-linear"),
    (dict(samples_exponent=1.5), "samples_exponent"),
])
def test_refuses_what_it_does_not_cover(bad, match):
    with pytest.raises(DMFTInputError, match=match):
        features_theory(FeaturesConfig(d=64, **bad))
    with pytest.raises(DMFTInputError, match="FeaturesConfig"):
        features_theory({"d": 64})


def test_second_layer_is_validated():
    with pytest.raises(DMFTInputError, match="second_layer"):
        FeaturesConfig(second_layer="uniform")


@pytest.mark.parametrize("second_layer", ["sign", "gaussian"])
def test_theory_against_the_simulator(second_layer):
    """d = 128, 8 seeds, against the theory at this p (the spikes' shrinkage by λ included).
    Test error: 4 standard errors plus a finite-d allowance b/d with b = 3 (validation/features.py
    measured |b| < 2 over d = 250-1000). The gain over random features (paired on the same
    readout and test data, so its SE is small): 4 paired SEs plus 1/d; at λ ≥ 1 that tolerance
    discriminates, a step that changed nothing would fail it."""
    c = FeaturesConfig(target="tanh_he3", d=128, lr=1.0, ridges=(0.1, 1.0, 10.0),
                       second_layer=second_layer)
    th = features_theory(c)
    res = simulate_features(c, seeds=8, seed=3, progress=False)
    est = res.estimate("step/test_error")
    assert np.all(np.abs(est.value - th.test_error_at_p) < 4 * est.error + 3.0 / c.d), (
        est.value, est.error, th.test_error_at_p)
    gain = res.paired("rf/test_error", "step/test_error")
    gain_th = res.theory["test_error"] - th.test_error_at_p
    allowed = 4 * gain.error + 1.0 / c.d
    assert np.all(np.abs(gain.value - gain_th) < allowed), (gain.value, gain.error, gain_th)
    assert np.all(gain_th[1:] > allowed[1:])  # at λ = 0.1 the paired SE is too large for this
    top = res.estimate("step/top")
    assert abs(top.value[-1] / c.p - th.top_over_p[0]) < 4 * top.error[-1] / c.p + 0.3 / c.d


def test_cli_theory_round_trip(tmp_path, capsys):
    out = tmp_path / "f.h5"
    assert main(["features", "--quick", "--theory", "--seeds", "2", "--out", str(out),
                 "--no-progress"]) == 0
    text = capsys.readouterr().out
    assert "theory (d→∞)" in text and "theory at this p" in text
    res = io.load_features(out)
    th = features_theory(res.config)
    np.testing.assert_array_equal(res.step_theory["test_error"], th.test_error)
    np.testing.assert_array_equal(res.step_theory["overlap"], th.overlap)
    assert res.step_theory["parameters/r"] == th.parameters["r"]
    from dmft.features import plot_features

    fig = plot_features(out)  # the theory lines are drawn from the file's result
    labels = [ln.get_label() for ln in fig.axes[1].get_lines()]
    assert "after the step, theory (d → ∞)" in labels


def test_cli_theory_refused_before_the_simulation(tmp_path, capsys):
    out = tmp_path / "f.h5"
    code = main(["features", "--quick", "--theory", "--steps", "2", "--out", str(out),
                 "--no-progress"])
    cap = capsys.readouterr()
    assert code == 1 and cap.out == ""
    one_line_error(cap.err, "`--steps` must be 1", "--steps=2", "nothing written")
    assert not out.exists()


def test_channel_resolvent_against_a_drawn_matrix():
    """The K × K deterministic equivalent of (B̃B̃ᵀ + μ)⁻¹ for two classes of rows
    r_j = b̂_j ⊗ l_c against one drawn matrix at p = d = 1200: the normalised trace within 5/d
    (measured 0.53/d) and a bilinear form within its fluctuation."""
    from dmft.features._channels import _form, resolvent, trace_resolvent

    rng = np.random.default_rng(0)
    d, kappa, mu = 1200, 1.0, 0.3
    p = int(kappa * d)
    L = np.array([[0.6, 0.3], [0.6, -0.3]])
    pc = np.array([0.5, 0.5])
    B = rng.standard_normal((p, d))
    B /= np.linalg.norm(B, axis=1, keepdims=True)
    cls = np.arange(p) % 2
    Bt = np.concatenate([B * L[cls, 0][:, None], B * L[cls, 1][:, None]], axis=1)  # p × 2d
    G = Bt @ Bt.T + mu * np.eye(p)
    direct = np.trace(np.linalg.inv(G)) / p
    assert abs(trace_resolvent(L, pc, kappa, mu)[0] - direct) < 5.0 / d
    # the bilinear form of x̃ = e₁ ⊗ (1, 0) + 0.7 e₂ ⊗ (0, 1), averaged over m = 100 disjoint
    # copies of it (one form fluctuates by O(1/√d); the mean by O(1/√(md))): measured
    # |deviation|·√(md) = 0.24, 0.24, 0.41 over three draws, allowed 2
    m = 100
    X = np.zeros((2 * d, m))
    X[2 * np.arange(m), np.arange(m)] = 1.0
    X[d + 2 * np.arange(m) + 1, np.arange(m)] = 0.7
    BX = Bt @ X
    direct_form = np.mean(np.sum(BX * np.linalg.solve(G, BX), axis=0))
    x = np.array([[1.0, 0.0], [0.0, 0.7]])
    assert abs(_form(x, x, resolvent(L, pc, kappa, mu), mu) - direct_form) < 2.0 / np.sqrt(m * d)
    # the equivalent differs from the class-blind one (T₊₋ ≠ T₊₊): the test can fail
    blind = trace_resolvent(np.array([[np.hypot(0.6, 0.3)]] * 2), pc, kappa, mu)[0]
    assert abs(blind - direct) > 20.0 / d


def test_channels_see_the_products_the_homoscedastic_bulk_misses():
    """staircase2 = z1 + z1 z2: the bulk fits part of z1 z2 through ζ·(w·x) (ζ ∝ z1), so the
    exact second moments give a lower error than the homoscedastic bulk, which sees staircase2
    exactly as z1_plus_he3 (same linear part and variance); for tanh_he3 the two are close."""
    kw = dict(kappa=1.0, alpha0=2.0, alpha1=2.0, lr=2.0, ridges=(0.1, 1.0))
    st = features_theory(FeaturesConfig(target="staircase2", **kw))
    st_h = features_theory(FeaturesConfig(target="staircase2", **kw), bulk="homoscedastic")
    z1 = features_theory(FeaturesConfig(target="z1_plus_he3", **kw), bulk="homoscedastic")
    np.testing.assert_allclose(st_h.test_error, z1.test_error, rtol=1e-10)
    assert np.all(st_h.test_error - st.test_error > 0.03)
    th = features_theory(FeaturesConfig(target="tanh_he3", **kw))
    th_h = features_theory(FeaturesConfig(target="tanh_he3", **kw), bulk="homoscedastic")
    assert np.all(np.abs(th.test_error - th_h.test_error) < 0.01)
    with pytest.raises(DMFTInputError, match="bulk"):
        features_theory(FeaturesConfig(d=64), bulk="exact")
