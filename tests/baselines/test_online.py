"""One-pass (online) SGD baseline: closed form, finite-d simulation, I/O, input checks.

Reference systems (see dmft/online.py for the ODE and its derivation):

* Linear model (p = k = 1, σ(h) = h, a = 1, g* = z): g = h − h* − √Δ ξ, so E[g h*] = m − 1,
  E[g h] = Q − m, E[g²] = Q − 2m + 1 + Δ and the ODE is affine,
      dm/dτ = −η(m − 1) − ηλ m,
      dQ/dτ = (η² − 2η − 2ηλ) Q + (2η − 2η²) m + η²(1 + Δ).
  For λ = 0, u = 1 − m and E = Q − 2m + 1 = |W − W*|²/d obey du/dτ = −η u and
  dE/dτ = −2ηE + η²(E + Δ), i.e. u = u₀ e^{−ητ}, E = E∞ + (E₀ − E∞) e^{−(2η − η²)τ} with
  E∞ = ηΔ/(2 − η). For λ > 0 we use the matrix exponential of the affine system.
  The expectations are quadratic in the Gaussian points, so with moment matching (default) the
  Monte Carlo is exact and only the integrator's tolerance remains (tolerance 1e-5, rtol 1e-7);
  without it, the fixed-sample averages carry an O(samples^{-1/2}) error and we require
  |z| < 4 with the reported standard error.
* Finite-d online SGD (d = 500, 64 seeds, τ ≤ 2), simulated directly here: agreement within
  4 combined standard errors plus a finite-d allowance 2/d (the ODE is the d → ∞ limit; the
  finite-d bias is O(1/d), not visible at this precision in a d = 250…2000 scan).
"""

from __future__ import annotations

import math

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
import scipy.linalg

import dmft
from dmft import DivergenceError, DMFTInputError, io
from dmft.baselines import solve_online
from dmft.model import make_problem

SAMPLES = 20_000
# the same save-grid size and tolerances compile the linear model's integrator once
_SAME_COMPILE = dict(n_out=31, samples=SAMPLES, rtol=1e-7, atol=1e-9)


def _linear(lr=0.5, ridge=0.0, noise=0.2, m0=0.3):
    return make_problem("linear", p=1, activation="linear", second_layer=[1.0], lr=lr,
                        ridge=ridge, noise=noise, m0=m0)


def _closed_form_lam0(tau, eta, noise, m0, q0):
    u = (1.0 - m0) * np.exp(-eta * tau)
    E0 = q0 - 2.0 * m0 + 1.0
    Einf = eta * noise / (2.0 - eta)
    E = Einf + (E0 - Einf) * np.exp(-(2.0 * eta - eta**2) * tau)
    m = 1.0 - u
    return m, E + 2.0 * m - 1.0


def _closed_form_expm(tau, eta, lam, noise, m0, q0):
    A = np.array([
        [-eta * (1.0 + lam), 0.0, eta],
        [2.0 * eta - 2.0 * eta**2, eta**2 - 2.0 * eta - 2.0 * eta * lam, eta**2 * (1.0 + noise)],
        [0.0, 0.0, 0.0],
    ])
    v = np.array([scipy.linalg.expm(A * t) @ np.array([m0, q0, 1.0]) for t in tau])
    return v[:, 0], v[:, 1]


@pytest.fixture(scope="module")
def linear_traj():
    return solve_online(_linear(), 3.0, **_SAME_COMPILE)


def test_linear_closed_form(linear_traj):
    tr = linear_traj
    m, Q = _closed_form_lam0(tr.step, 0.5, 0.2, 0.3, 0.3**2 + 1.0)
    err_m = np.abs(tr.m.value[:, 0, 0] - m).max()
    err_Q = np.abs(tr.Q.value[:, 0, 0] - Q).max()
    assert err_m < 1e-5 and err_Q < 1e-5, (err_m, err_Q)
    assert tr.kind == "online" and tr.step.dtype == np.float64
    np.testing.assert_allclose(tr.step, np.linspace(0.0, 3.0, 31))
    # test error of the linear model: (E + Δ)/2; online never reuses data: train = test
    np.testing.assert_allclose(tr.test_error.value, 0.5 * (Q - 2 * m + 1 + 0.2), atol=1e-5)
    np.testing.assert_array_equal(tr.train_loss.value, tr.test_error.value)
    assert set(tr.settings) >= {"horizon", "samples", "seed", "replicas", "solver", "rtol",
                                "atol"}


def test_linear_ridge_closed_form():
    eta, lam, noise, m0 = 0.8, 0.3, 0.1, -0.2
    tr = solve_online(_linear(lr=eta, ridge=lam, noise=noise, m0=m0), 2.0, **_SAME_COMPILE)
    m, Q = _closed_form_expm(tr.step, eta, lam, noise, m0, m0**2 + 1.0)
    assert np.abs(tr.m.value[:, 0, 0] - m).max() < 1e-5
    assert np.abs(tr.Q.value[:, 0, 0] - Q).max() < 1e-5


def test_linear_raw_samples_within_standard_error():
    """Without moment matching the fixed-sample averages are noisy: |z| < 4, SE ~ N^{-1/2}."""
    tr = solve_online(_linear(), 3.0, moment_match=False, **_SAME_COMPILE)
    m, Q = _closed_form_lam0(tr.step, 0.5, 0.2, 0.3, 1.09)
    se_m, se_Q = tr.m.error[1:, 0, 0], tr.Q.error[1:, 0, 0]
    assert np.all(se_m > 0) and se_m.max() < 10 / math.sqrt(SAMPLES * 8)
    assert np.abs((tr.m.value[1:, 0, 0] - m[1:]) / se_m).max() < 4
    assert np.abs((tr.Q.value[1:, 0, 0] - Q[1:]) / se_Q).max() < 4


def test_same_seed_same_result(linear_traj):
    again = solve_online(_linear(), 3.0, **_SAME_COMPILE)
    np.testing.assert_array_equal(again.Q.value, linear_traj.Q.value)


# --------------------------------------------------------------------------------------------
# finite-d online SGD, simulated directly (independent of dmft.solve_online)
# --------------------------------------------------------------------------------------------


def _simulate_online(problem, d, tau_max, every, seeds, seed=0):
    """m, Q every ``every`` steps of W ← (1 − ηλ/d) W − (η/√d) g xᵀ, one fresh x per step."""
    p, k = problem.p, problem.k
    eta, lam, noise = float(problem.lr[0]), problem.ridge, problem.noise
    a = jnp.asarray(problem.second_layer)
    n_chunks = int(round(tau_max * d)) // every
    rng = np.random.default_rng(seed)
    Ws, W0 = [], []
    for _ in range(seeds):
        U, _ = np.linalg.qr(rng.standard_normal((d, k + p)))
        star = math.sqrt(d) * U[:, :k].T  # orthogonal rows of norm √d
        perp = np.linalg.cholesky(problem.qperp0) @ (math.sqrt(d) * U[:, k:].T)
        Ws.append(star)
        W0.append(problem.m0 @ star + perp)
    Ws, W0 = jnp.asarray(np.stack(Ws)), jnp.asarray(np.stack(W0))

    def run(W, star, key):
        def sgd_step(W, t):
            kx, kn = jax.random.split(jax.random.fold_in(key, t))
            x = jax.random.normal(kx, (d,))
            h, hs = W @ x / math.sqrt(d), star @ x / math.sqrt(d)
            y = problem.target(hs) + math.sqrt(noise) * jax.random.normal(kn, ())
            f = jnp.sum(a * jnp.maximum(h, 0.0))  # relu student
            g = (f - y) * a * (h > 0)
            return (1.0 - eta * lam / d) * W - (eta / math.sqrt(d)) * jnp.outer(g, x), None

        def chunk(W, c):
            W, _ = jax.lax.scan(sgd_step, W, c * every + jnp.arange(every))
            return W, W

        _, Wt = jax.lax.scan(chunk, W, jnp.arange(n_chunks))
        Wt = jnp.concatenate([W[None], Wt])
        return Wt @ star.T / d, jnp.einsum("tjd,tld->tjl", Wt, Wt) / d

    keys = jax.vmap(lambda s: jax.random.fold_in(jax.random.key(seed + 7), s))(jnp.arange(seeds))
    m, Q = jax.jit(jax.vmap(run))(W0, Ws, keys)
    return np.asarray(m), np.asarray(Q)


@pytest.mark.slow
def test_agrees_with_finite_d_online_sgd():
    d, seeds, horizon, n_out = 500, 64, 2.0, 21
    problem = make_problem("tanh_he3", p=2, activation="relu", lr=0.5, noise=0.1, ridge=0.1)
    tr = solve_online(problem, horizon, n_out=n_out, samples=SAMPLES, rtol=1e-4, atol=1e-6)
    every = int(round(horizon * d)) // (n_out - 1)
    m, Q = _simulate_online(problem, d, horizon, every, seeds)
    allowance = 2.0 / d
    for name, sim, est in (("m", m, tr.m), ("Q", Q, tr.Q)):
        mean, se = sim.mean(0), sim.std(0, ddof=1) / math.sqrt(seeds)
        comb = np.sqrt(se**2 + est.error**2)
        excess = np.abs(mean - est.value) - (4.0 * comb + allowance)
        assert excess.max() < 0, (name, np.abs(mean - est.value).max(), comb.max())
    # the dynamics is not trivial over this window: the overlaps move by > 10 SE
    assert np.abs(tr.m.value[-1, :, 0]).min() > 10 * tr.m.error[-1, :, 0].max() + 0.05
    assert tr.test_error.value[-1] < tr.test_error.value[0] - 0.05


# --------------------------------------------------------------------------------------------
# divergence, I/O, input checks
# --------------------------------------------------------------------------------------------


def test_divergence_reports_tau():
    # linear model with η = 3: E grows like e^{(η² − 2η)τ} = e^{3τ}, past 1e8 near τ ≈ 6
    with pytest.raises(DivergenceError, match=r"tau = ") as info:
        solve_online(_linear(lr=3.0), 10.0, **_SAME_COMPILE)
    part = info.value.partial
    # save points every 1/3: the run crosses 1e8 between tau = 5.7 and 6.7
    assert part.status == "diverged" and 17 <= part.first_bad_step <= 20
    assert len(part.step) == part.first_bad_step and np.all(np.isfinite(part.Q.value))


def test_io_round_trip(tmp_path, linear_traj):
    path = io.save(linear_traj, tmp_path / "online.h5")
    back = io.load(path)
    assert back.kind == "online" and back.settings == linear_traj.settings
    np.testing.assert_array_equal(back.step, linear_traj.step)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_array_equal(back.observable(name).value,
                                      linear_traj.observable(name).value)
        np.testing.assert_array_equal(back.observable(name).error,
                                      linear_traj.observable(name).error)
    with h5py.File(path, "r") as f:
        assert list(f.attrs["format_version"]) == [1, 2]
        assert f.attrs["time_axis"] == "tau" and f["step"].dtype == np.float64
    assert "time_axis:" in io.describe(path)


def test_plots_online_axis(linear_traj):
    import matplotlib.pyplot as plt

    from dmft import plot

    ax = plot.plot_overlaps(linear_traj)
    assert "tau" in ax.get_xlabel() and ax.get_xlim()[1] == pytest.approx(3.0)
    ax2 = plot.plot_online_baseline(None, linear_traj)
    assert len(ax2.lines) >= 1 and "tau" in ax2.get_xlabel()
    fig = plot.plot_comparison(linear_traj)
    assert "online SGD" in fig.get_suptitle()
    plt.close("all")


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(horizon=0.0), r"`horizon` must be in \(0, inf\); got horizon=0"),
        (dict(horizon=float("inf")), r"`horizon` must be finite"),
        (dict(n_out=1), r"`n_out` must be an integer in \[2, "),
        (dict(samples=999), r"`samples` must be an integer in \[1000, "),
        (dict(rtol=-1.0), r"`rtol` must be in"),
        (dict(replicas=1), r"`replicas` must be an integer in \[2, "),
    ],
)
def test_bad_input_rejected(kwargs, match):
    args = dict(horizon=1.0) | kwargs
    horizon = args.pop("horizon")
    with pytest.raises(DMFTInputError, match=match):
        solve_online(_linear(), horizon, **args)


def test_schedule_lr_rejected():
    problem = make_problem("linear", p=1, activation="linear", second_layer=[1.0],
                           lr=[0.1, 0.2, 0.3], steps=3)
    with pytest.raises(DMFTInputError, match=r"`problem.lr` must be constant.*\[0.1, 0.3\]"):
        solve_online(problem, 1.0)
    with pytest.raises(DMFTInputError, match="`problem` must be a dmft.Problem"):
        solve_online("linear", 1.0)


def test_exported():
    assert dmft.solve_online is solve_online
