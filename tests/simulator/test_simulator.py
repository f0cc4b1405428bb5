"""Tests of the direct finite-d simulator (dmft.simulate), the arbiter of the DMFT.

Reference systems:
- one GD step written out in numpy from the simulator's own W*, W_0, X, y;
- linear regression (p = k = 1, σ(h) = h, a = 1, g* = z1, λ = Δ = 0, reuse): the error
  e_t = W_t − W* obeys e_{t+1} = e_t (I − η Σ̂), Σ̂ = XᵀX/d, so
  E[m_t] = 1 + (m_0 − 1) c_t with c_t = (1/d) E tr (I − η Σ̂)^t (rotation invariance of X makes
  E (I − ηΣ̂)^t a multiple of I). Exact real-Wishart moments for j ≤ 3 give c_t for t ≤ 3 at
  finite d; population GD (m_{t+1} = m_t + ηα(1 − m_t)) is its α → ∞ limit.
"""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from dmft import DivergenceError, DMFTInputError
from dmft._rng import STREAM_SIM, stream_key
from dmft.model import make_problem
from dmft.simulator import TRACE_COUNT, simulate
from dmft.simulator._draws import batch_key, draw_data, init_seed, seed_key
from dmft.simulator._seeds import run_seed_batch

M0 = np.array([[0.3, -0.1], [0.2, 0.4]])
QPERP0 = np.array([[0.8, 0.3], [0.3, 0.6]])


def _first_draws(problem, d, key):
    """W*, W_0 and the step-0 batch (X, y) that simulate draws for the seed of ``key``."""
    n = int(round(problem.alpha * d))
    return map(np.asarray, init_seed(problem.numbers(), d, key, n))


@pytest.fixture(scope="module")
def base_problem():
    return make_problem("tanh_he3", p=2, activation="relu", lr=0.3, steps=4, m0=M0, qperp0=QPERP0)


@pytest.fixture(scope="module")
def base_run(base_problem):
    return simulate(base_problem, d=40, seeds=5, seed=3, progress=False)


def test_initial_overlaps_exact(base_problem, base_run):
    m0 = base_run.per_seed["m"][:, 0]
    q0 = base_run.per_seed["Q"][:, 0]
    np.testing.assert_allclose(m0, np.broadcast_to(M0, m0.shape), rtol=0, atol=1e-10)
    q_expected = np.broadcast_to(M0 @ M0.T + QPERP0, q0.shape)
    np.testing.assert_allclose(q0, q_expected, rtol=0, atol=1e-10)
    # and the teacher rows are orthogonal with norm √d
    wstar, _, _, _ = _first_draws(base_problem, 40, seed_key(3, 0))
    np.testing.assert_allclose(wstar @ wstar.T / 40, np.eye(2), atol=1e-12)
    assert base_run.kind == "simulation"
    assert base_run.per_seed["m"].shape == (5, 5, 2, 2)
    assert base_run.per_seed["test_error"].shape == (5, 5)
    np.testing.assert_array_equal(base_run.step, np.arange(5))


def test_same_seed_bitwise_and_seed_batch_invariance(base_problem, base_run):
    again = simulate(base_problem, d=40, seeds=5, seed=3, progress=False)
    for name, x in base_run.per_seed.items():
        np.testing.assert_array_equal(again.per_seed[name], x, err_msg=name)
    batched = simulate(base_problem, d=40, seeds=5, seed=3, seed_batch=2, progress=False)
    assert batched.settings["seed_batch"] == 2
    for name, x in base_run.per_seed.items():
        np.testing.assert_allclose(batched.per_seed[name], x, rtol=1e-12, atol=1e-14, err_msg=name)
    other = simulate(base_problem, d=40, seeds=1, seed=4, progress=False)
    assert not np.allclose(other.per_seed["m"][0, 1:], base_run.per_seed["m"][0, 1:])
    # one seed: the standard error is undefined
    assert np.all(np.isnan(other.m.error)) and np.all(np.isfinite(other.m.value))


def _numpy_gd_step(w, wstar, x, y, a, eta, ridge, d):
    """One GD step on the sum loss (tanh student), in numpy; also returns the train loss at w."""
    h = x @ w.T / math.sqrt(d)
    f = np.tanh(h) @ a
    train = np.mean(0.5 * (y - f) ** 2)
    g = (f - y)[:, None] * a[None, :] * (1.0 - np.tanh(h) ** 2)
    w_next = (1.0 - eta * ridge) * w - eta * g.T @ x / math.sqrt(d)
    return w_next, train


def _train_loss(w, x, y, a, d):
    f = np.tanh(x @ w.T / math.sqrt(d)) @ a
    return np.mean(0.5 * (y - f) ** 2)


def test_one_step_equals_numpy_and_fresh_draws_new_data():
    d, seed = 30, 7
    kw = dict(p=2, activation="tanh", alpha=2.0, noise=0.1, ridge=0.05, lr=[0.3, 0.2], steps=2)
    kw.update(m0=[[0.2], [-0.1]], qperp0=[[1.0, 0.2], [0.2, 0.5]])
    reuse = make_problem("he3", schedule="reuse", **kw)
    fresh = make_problem("he3", schedule="fresh", **kw)
    key = seed_key(seed, 0)
    wstar, w0, x0, y0 = _first_draws(reuse, d, key)
    a = np.asarray(reuse.second_layer)
    assert x0.shape == (60, d) and y0.shape == (60,)

    w1, train0 = _numpy_gd_step(w0, wstar, x0, y0, a, 0.3, 0.05, d)
    sim_r = simulate(reuse, d=d, seeds=2, seed=seed, progress=False)
    ps = {k: v[0] for k, v in sim_r.per_seed.items()}
    np.testing.assert_allclose(ps["train_loss"][0], train0, rtol=1e-12)
    np.testing.assert_allclose(ps["m"][1], w1 @ wstar.T / d, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ps["Q"][1], w1 @ w1.T / d, rtol=1e-11, atol=1e-13)
    np.testing.assert_allclose(ps["train_loss"][1], _train_loss(w1, x0, y0, a, d), rtol=1e-11)

    # fresh: step 1 uses a new batch, drawn from the key folded with t = 1
    x1, y1 = map(np.asarray, draw_data(fresh.numbers(), wstar, batch_key(key, 1), 60, "float64"))
    assert np.max(np.abs(x1 - x0)) > 1.0 and np.max(np.abs(y1 - y0)) > 0.1
    sim_f = simulate(fresh, d=d, seeds=2, seed=seed, progress=False)
    pf = {k: v[0] for k, v in sim_f.per_seed.items()}
    # step 0 -> 1 sees the same batch in both schedules
    np.testing.assert_allclose(pf["m"][1], ps["m"][1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pf["Q"][1], ps["Q"][1], rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(pf["train_loss"][1], _train_loss(w1, x1, y1, a, d), rtol=1e-11)
    w2, _ = _numpy_gd_step(w1, wstar, x1, y1, a, 0.2, 0.05, d)
    np.testing.assert_allclose(pf["m"][2], w2 @ wstar.T / d, rtol=1e-11, atol=1e-13)
    assert np.max(np.abs(pf["m"][2] - ps["m"][2])) > 1e-3


def test_repeat_schedule_switches_batch():
    """repeat:2 uses batch 0 at steps 0, 1 and batch 1 at step 2: identical to reuse up to m_2,
    but the train loss at t = 2 is measured on the new batch (and the step-2 update differs)."""
    kw = dict(p=2, activation="tanh", alpha=2.0, lr=0.3, steps=3)
    reuse = simulate(make_problem("he3", schedule="reuse", **kw), d=30, seeds=2, progress=False)
    rep = simulate(make_problem("he3", schedule="repeat:2", **kw), d=30, seeds=2, progress=False)
    for name in ("m", "Q"):
        np.testing.assert_allclose(
            rep.per_seed[name][:, :3], reuse.per_seed[name][:, :3], rtol=1e-12, atol=1e-14
        )
        assert np.max(np.abs(rep.per_seed[name][:, 3] - reuse.per_seed[name][:, 3])) > 1e-3
    np.testing.assert_allclose(
        rep.per_seed["train_loss"][:, :2], reuse.per_seed["train_loss"][:, :2], rtol=1e-12
    )
    assert np.all(
        np.abs(rep.per_seed["train_loss"][:, 2] - reuse.per_seed["train_loss"][:, 2]) > 1e-6
    )


def test_exact_and_sample_test_error_agree():
    """Given W_t, the quadrature is the exact expectation of the sampled loss (W*W*ᵀ/d = I), so
    the per-seed paired difference sample − exact has mean 0; SE = std(ddof=1)/√seeds of that
    difference; tolerance 4 SE at every step. Label noise Δ = 0.25 is in both."""
    pb = make_problem("tanh_he3", p=2, noise=0.25, lr=0.3, steps=3)
    kw = dict(d=60, seeds=16, seed=1, progress=False)
    ex = simulate(pb, test_error="exact", **kw)
    sa = simulate(pb, test_error="sample", n_test=2000, **kw)
    np.testing.assert_array_equal(ex.per_seed["m"], sa.per_seed["m"])
    diff = sa.per_seed["test_error"] - ex.per_seed["test_error"]
    se = diff.std(axis=0, ddof=1) / math.sqrt(diff.shape[0])
    z = diff.mean(axis=0) / se
    assert np.all(np.abs(z) < 4.0), z
    assert np.all(ex.test_error.value > 0.125)  # includes Δ/2


def _wishart_moments(n: int, d: int) -> list[float]:
    """M_j = (1/d) E tr (XᵀX/d)^j for X (n×d) standard Gaussian, exact for j ≤ 3."""
    return [
        1.0,
        n / d,
        n * d * (n + d + 1) / d**3,
        n * d * (n * n + d * d + 3 * n * d + 3 * n + 3 * d + 4) / d**4,
    ]


def test_linear_regression_exact_finite_d():
    """E[m_t] = 1 + (m_0 − 1) c_t, c_t = Σ_j C(t,j)(−η)^j M_j with the exact moments M_j (j ≤ 3),
    so no finite-d allowance: tolerance 4 SE (SE = std(ddof=1)/√16 over seeds) at t = 1..3.
    Population GD (c_t = (1 − ηα)^t) is the α → ∞ limit; at ηα = 0.8 it is off by
    (1 − m_0) η²α (C(t,2) + ...) ≈ 0.02 at t = 2, 3 (12–17 SE for seeds 0, 1, 2), so the test also
    checks that the simulation resolves the finite-α (Marchenko–Pastur) correction (> 4 SE)."""
    alpha, d, eta, steps, m0 = 20.0, 200, 0.04, 3, 0.3
    pb = make_problem(
        "linear",
        p=1,
        activation="linear",
        second_layer=[1.0],
        alpha=alpha,
        lr=eta,
        steps=steps,
        m0=m0,
        qperp0=0.5,
    )
    sim = simulate(pb, d=d, seeds=16, seed=0, progress=False)
    mom = _wishart_moments(sim.settings["n"], d)
    t_all = range(steps + 1)
    c = np.array([sum(math.comb(t, j) * (-eta) ** j * mom[j] for j in range(t + 1)) for t in t_all])
    expected = 1.0 + (m0 - 1.0) * c
    m, se = sim.m.value[:, 0, 0], sim.m.error[:, 0, 0]
    assert abs(m[0] - m0) < 1e-12
    assert np.all(np.abs(m[1:] - expected[1:]) < 4.0 * se[1:]), (m, expected, se)
    pop = 1.0 + (m0 - 1.0) * (1.0 - eta * alpha) ** np.arange(steps + 1)
    assert np.all(np.abs(m[2:] - pop[2:]) > 4.0 * se[2:]), "population GD not resolved as off"


def test_float32_close_to_float64(base_problem, base_run):
    """float32 draws differ from float64 draws (other bits), so the public float32 run is only
    checked for dtype and finiteness; float32 *arithmetic* is compared on the float64 data."""
    f32 = simulate(base_problem, d=40, seeds=5, seed=3, dtype="float32", progress=False)
    assert f32.per_seed["m"].dtype == np.float32 and f32.settings["dtype"] == "float32"
    assert all(np.all(np.isfinite(v)) for v in f32.per_seed.values())
    root = stream_key(3, STREAM_SIM)
    ids = jnp.arange(5, dtype=jnp.int32)
    n = base_run.settings["n"]
    m, q, train, _, _ = run_seed_batch(
        base_problem.numbers(), root, ids, 40, n, "float32", False, 1, "float64"
    )
    assert m.dtype == jnp.float32
    for name, x in (("m", m), ("Q", q), ("train_loss", train)):
        np.testing.assert_allclose(x, base_run.per_seed[name], rtol=0, atol=3e-5, err_msg=name)


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(d=0), r"`d` must be an integer in \[1"),
        (dict(d=3), r"`d` must be .*p \+ k.*got d=3"),
        (dict(d=2.5), r"`d` must be an integer"),
        (dict(seeds=0), r"`seeds` must be an integer in \[1"),
        (dict(seed=-1), r"`seed` must be an integer in \[0"),
        (dict(seed_batch=0), r"`seed_batch` must be an integer in \[1"),
        (dict(test_error="mc"), r"`test_error` must be one of"),
        (dict(n_test=0), r"`n_test` must be an integer in \[1"),
        (dict(dtype="float16"), r"`dtype` must be one of"),
        (dict(dtype="nonsense"), r"`dtype` must be one of"),
    ],
)
def test_bad_input_names_parameter(base_problem, kwargs, match):
    args = dict(d=20, seeds=2, progress=False) | kwargs
    with pytest.raises(DMFTInputError, match=match):
        simulate(base_problem, **args)


def test_too_large_d_refused_before_compute(base_problem):
    """d = 10⁶ at α = 3 needs 24 TB of data matrices: refused at once, naming d."""
    with pytest.raises(DMFTInputError, match=r"`d`=1000000 is too large.*seed_batch=1"):
        simulate(base_problem, d=10**6, seeds=1, progress=False)


def test_bad_input_too_few_samples_and_problem_type():
    pb = make_problem("he2", p=1, alpha=0.01)
    msg = r"alpha.*d.*at least 1 sample.*alpha=0.01, d=20 → n=0"
    with pytest.raises(DMFTInputError, match=msg):
        simulate(pb, d=20)
    with pytest.raises(DMFTInputError, match=r"`problem` must be a dmft.Problem"):
        simulate({"p": 1}, d=20)


def test_float64_needs_x64(base_problem):
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(DMFTInputError, match=r"`dtype` float64 .*x64"):
            simulate(base_problem, d=20, dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", True)


def test_divergence_raises_with_partial():
    pb = make_problem("tanh_he3", p=2, lr=1e3, steps=30)
    with pytest.raises(DivergenceError) as info:
        simulate(pb, d=20, seeds=2, progress=False)
    err = info.value
    part = err.partial
    assert 1 <= err.step < 31
    assert part.status == "diverged" and part.first_bad_step == err.step
    assert len(part.step) == err.step < 31
    assert part.per_seed["Q"].shape[1] == err.step
    for name in ("m", "Q", "test_error", "train_loss"):
        assert np.all(np.isfinite(part.per_seed[name])), name
    assert np.all(np.abs(part.per_seed["Q"]) <= 1e100)


@pytest.mark.filterwarnings("ignore:schedule=.*selects on average:UserWarning")
def test_new_minibatch_fraction_does_not_recompile():
    """b of ``sgd:b`` is a traced number (``Problem.numbers().batch_fraction``): a new b runs
    the compiled seed batch again and selects other samples."""
    kw = dict(p=2, lr=0.3, steps=3, alpha=2.0)
    half = simulate(make_problem("he3", schedule="sgd:0.5", **kw), d=30, seeds=2, progress=False)
    before = TRACE_COUNT[0]
    quarter = simulate(make_problem("he3", schedule="sgd:0.25", **kw), d=30, seeds=2,
                       progress=False)
    assert TRACE_COUNT[0] == before
    np.testing.assert_array_equal(quarter.per_seed["m"][:, 0], half.per_seed["m"][:, 0])
    assert np.max(np.abs(quarter.per_seed["m"][:, 1] - half.per_seed["m"][:, 1])) > 1e-3
