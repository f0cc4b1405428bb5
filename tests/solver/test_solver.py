"""Tests of the DMFT solver against exact results, special cases and invariances.

Tolerances: statistical comparisons use max |z| <= 4 over the time grid, with
z = (a - b) / sqrt(SE_a^2 + SE_b^2); exact references use absolute tolerances stated per test.
"""

import itertools
import math

import jax
import numpy as np
import pytest

from dmft import DivergenceError, DMFTInputError
from dmft.baselines import linear_gd
from dmft.model import loss_grad_h, make_problem
from dmft.solver import REGRESSIONS, RESPONSE_CLASSES, append_factor_row, solve

Z_MAX = 4.0


def _linear(alpha, lr, steps, ridge=0.0, noise=0.0, m0=0.0, schedule="reuse"):
    return make_problem("linear", p=1, activation="linear", second_layer=[1.0], alpha=alpha,
                        lr=lr, steps=steps, ridge=ridge, noise=noise, m0=m0, schedule=schedule)


@pytest.mark.parametrize(
    "alpha,lr,ridge,noise,m0",
    [(0.5, 0.3, 0.0, 0.0, 0.0), (2.0, 0.1, 0.1, 0.2, 0.3), (0.7, 0.5, 0.05, 0.1, -0.2),
     (3.0, 0.05, 0.0, 0.0, 0.0)],
)
def test_linear_matches_marchenko_pastur(alpha, lr, ridge, noise, m0):
    """The linear model's DMFT equals the closed-form MP trajectory up to T = 50.

    The required accuracy is 3e-3; the regression response estimator is exact for a linear g, so
    we also require 1e-6 (the only error left is the 1e-8 Schur floor and float64 rounding).
    """
    T = 50
    res = solve(_linear(alpha, lr, T, ridge, noise, m0), samples=8000, seed=1, progress=False)
    ex = linear_gd(alpha, np.full(T, lr), ridge, noise, m0)
    for name in ("m", "Q", "test_error"):
        got = np.asarray(getattr(res, name).value).reshape(T + 1)
        err = np.max(np.abs(got - ex[name]))
        assert err < 3e-3 and err < 1e-6, (name, err)


def test_marchenko_pastur_rule_moments():
    """Mass 1 and mean alpha, second moment alpha^2 + alpha (exact MP moments)."""
    from dmft.baselines import marchenko_pastur_rule

    for alpha in (0.3, 1.0, 2.5):
        x, w = marchenko_pastur_rule(alpha)
        assert abs(w.sum() - 1) < 1e-9
        assert abs((w * x).sum() - alpha) < 1e-9
        assert abs((w * x * x).sum() - alpha**2 - alpha) < 1e-8


def test_fresh_linear_closed_form():
    """Fresh batches, linear model: one-pass large-batch recursion in closed form.

    With S_t = X_tᵀX_t/d fresh each step, E[S] = α I and E[S²] = (α² + α) I, so with
    e = W − W*, μ_t = m_t − 1, E_t = |e_t|²/d, c = 1 − ηλ − ηα:
        μ_{t+1} = c μ_t − ηλ,   E_{t+1} = (c² + η²α) E_t − 2ηλ c μ_t + η²λ² + η²αΔ,
    and Q = 2m − 1 + E.
    """
    alpha, eta, lam, noise, T = 1.5, 0.2, 0.1, 0.3, 8
    res = solve(_linear(alpha, eta, T, lam, noise, 0.2, "fresh"), samples=8000, seed=0,
                progress=False)
    mu, E = 0.2 - 1.0, (0.2 - 1.0) ** 2 + 1.0
    c = 1 - eta * lam - eta * alpha
    ms, Qs = [], []
    for _ in range(T + 1):
        ms.append(mu + 1)
        Qs.append(2 * (mu + 1) - 1 + E)
        mu, E = c * mu - eta * lam, (c * c + eta**2 * alpha) * E - 2 * eta * lam * c * mu \
            + eta**2 * lam**2 + eta**2 * alpha * noise
    assert np.max(np.abs(res.m.value[:, 0, 0] - ms)) < 1e-8
    assert np.max(np.abs(res.Q.value[:, 0, 0] - Qs)) < 1e-8


@pytest.fixture(scope="module")
def tanh_runs():
    kw = dict(p=2, activation="relu", alpha=3.0, lr=0.2, steps=3)
    reuse = solve(make_problem("tanh_he3", **kw), samples=64_000, seed=3, progress=False)
    fresh = solve(make_problem("tanh_he3", schedule="fresh", **kw), samples=64_000, seed=3,
                  progress=False)
    return reuse, fresh


def test_step_one_equal_for_reuse_and_fresh(tanh_runs):
    reuse, fresh = tanh_runs
    np.testing.assert_allclose(reuse.m.value[:2], fresh.m.value[:2], rtol=1e-10, atol=1e-13)
    np.testing.assert_allclose(reuse.Q.value[:2], fresh.Q.value[:2], rtol=1e-10, atol=1e-13)
    # ...and they differ afterwards (the reaction term and memory act from step 2 on)
    assert np.max(np.abs(reuse.Q.value[2] - fresh.Q.value[2])) > 1e-3


def test_step_one_matches_one_step_map(tanh_runs):
    """m_1 = −η α E[g_0 h*ᵀ], with h_0 ~ N(0, I) independent of h* at m_0 = 0.

    For square loss g = (f − y) a σ'(h) and f ⟂ h*, so E[g_j h*_i] = −a_j E[σ'] E[y h*_i]:
    a 2-D Gauss–Hermite integral for tanh_he3 (E[σ'] = 1/2 for ReLU).
    """
    reuse, _ = tanh_runs
    x, w = np.polynomial.hermite_e.hermegauss(200)
    w = w / math.sqrt(2 * math.pi)
    Z1, Z2 = np.meshgrid(x, x, indexing="ij")
    y = np.tanh(Z1 + Z2**3 - 3 * Z2)
    Ey_z = np.array([np.sum(np.outer(w, w) * y * Z1), np.sum(np.outer(w, w) * y * Z2)])
    a = np.array([1, -1]) / math.sqrt(2)
    m1 = 0.2 * 3.0 * 0.5 * np.outer(a, Ey_z)
    z = (reuse.m.value[1] - m1) / reuse.m.error[1]
    assert np.max(np.abs(z)) < Z_MAX, z


def test_fresh_structure(tanh_runs):
    """Fresh batches: no memory (Γ(t,s) = 0 for s < t) and C(t,s) = 0 for s ≠ t."""
    _, fresh = tanh_runs
    G = fresh.kernels["Gamma"].value
    C = fresh.kernels["C"].value
    T1 = G.shape[0]
    for t in range(T1):
        for s in range(T1):
            if s != t:
                assert np.all(G[t, s] == 0.0) and np.all(C[t, s] == 0.0)
    assert np.all(np.abs(np.einsum("ttqr->tqr", G)) > 0)


def _population_gd(problem, steps, n=1_000_000, seed=0):
    """Population GD (α → ∞ with ηα fixed) on (m, Q) by Stein on the (p+k)-dim Gaussian.

    W ← W − ηα E[g xᵀ]/√d with E[g xᵀ] = B [W; W*]/√d, B = E[g (h; h*)ᵀ] G⁻¹, G the Gram of
    [W; W*]/√d. Expectations by Monte Carlo with common random numbers (n samples).
    """
    p, k = problem.p, problem.k
    a = np.asarray(problem.second_layer)
    rng = np.random.default_rng(seed)
    u = rng.standard_normal((n, p + k))
    act = problem.act
    m, Q = np.array(problem.m0), np.array(problem.qperp0) + problem.m0 @ problem.m0.T
    step = problem.alpha * problem.lr[0]
    out = [(m.copy(), Q.copy())]
    for _ in range(steps):
        G = np.block([[Q, m], [m.T, np.eye(k)]])
        v = u @ np.linalg.cholesky(G).T
        h, hs = v[:, :p], v[:, p:]
        y = np.asarray(problem.target(hs))
        g = np.asarray(loss_grad_h(h, y, a, act))
        Egv = g.T @ v / n
        B = Egv @ np.linalg.inv(G)
        BG = B @ G
        m = m - step * BG[:, p:]
        Q = Q - step * (BG[:, :p] + BG[:, :p].T) + step**2 * B @ G @ B.T
        out.append((m.copy(), Q.copy()))
    return np.array([o[0] for o in out]), np.array([o[1] for o in out])


@pytest.mark.slow
def test_large_alpha_approaches_population_gd():
    """α → ∞ at fixed ηα: the DMFT gap to population GD shrinks like 1/α."""
    gaps = []
    for alpha in (8.0, 32.0):
        pr = make_problem("he2", p=1, activation="erf", second_layer="ones", alpha=alpha,
                          lr=0.5 / alpha, steps=4, m0=0.3)
        # small η: little new randomness per step, so Stein's Γ is noisy (and solve warns);
        # erf is smooth, so the pathwise response is the right estimator here
        res = solve(pr, samples=64_000, seed=0, progress=False, response="pathwise")
        pm, pQ = _population_gd(pr, 4)
        gaps.append(np.max(np.abs(res.Q.value - pQ)))
        assert np.max(np.abs(res.m.value - pm)) < 4 * res.m.error.max() + 2.0 / alpha
    assert gaps[1] < 0.5 * gaps[0], gaps


def test_chunk_size_invariance_and_reproducibility():
    pr = make_problem("tanh_he3", alpha=2.0, lr=0.5, steps=3)
    a = solve(pr, samples=4000, seed=7, chunk_size=None, progress=False)
    b = solve(pr, samples=4000, seed=7, chunk_size=100, progress=False)
    c = solve(pr, samples=4000, seed=7, chunk_size=None, progress=False)
    d = solve(pr, samples=4000, seed=8, chunk_size=None, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_allclose(getattr(b, name).value, getattr(a, name).value, rtol=1e-12,
                                   atol=1e-14)
        assert np.array_equal(getattr(c, name).value, getattr(a, name).value)
    np.testing.assert_allclose(b.kernels["Gamma"].value, a.kernels["Gamma"].value, rtol=1e-10,
                               atol=1e-12)
    assert not np.array_equal(d.m.value, a.m.value)


def test_causal_factor_rows():
    """Appending rows reproduces L Lᵀ = Q⊥ and leaves earlier rows unchanged."""
    rng = np.random.default_rng(0)
    T1, p = 5, 2
    A = rng.standard_normal((T1 * p, T1 * p))
    Q = A @ A.T / (T1 * p) + 0.1 * np.eye(T1 * p)
    Qb = Q.reshape(T1, p, T1, p).transpose(0, 2, 1, 3)
    fac = (jax.numpy.eye(T1 * p), jax.numpy.eye(T1 * p))
    prev = None
    for t in range(T1):
        fac, ev, jit, _ = append_factor_row(fac, jax.numpy.asarray(Qb[t]), t, p)
        Ln, Linv = np.asarray(fac[0]), np.asarray(fac[1])
        n = (t + 1) * p
        np.testing.assert_allclose(Ln[:n, :n] @ Ln[:n, :n].T, Q[:n, :n], atol=1e-12)
        np.testing.assert_allclose(Linv @ Ln, np.eye(T1 * p), atol=1e-12)  # kept inverse
        if prev is not None:
            assert np.array_equal(Ln[: t * p], prev[: t * p])
        assert float(jit) == 0.0 and float(ev) > 0
        prev = Ln
    # sampled covariance of w = L z matches Q within Monte Carlo error
    z = rng.standard_normal((200_000, T1 * p))
    w = z @ Ln.T
    emp = w.T @ w / len(w)
    se = np.sqrt((Q**2 + np.outer(np.diag(Q), np.diag(Q))) / len(w))
    assert np.max(np.abs(emp - Q) / se) < 5


def test_causal_factor_repairs_singular_covariance():
    """A rank-deficient Q⊥ is clipped and reported, never NaN."""
    T1, p = 3, 1
    Q = np.ones((3, 3))  # w_0 = w_1 = w_2: Schur complements are 0
    fac = (jax.numpy.eye(3), jax.numpy.eye(3))
    evs, jits = [], []
    for t in range(T1):
        fac, ev, jit, _ = append_factor_row(fac, jax.numpy.asarray(Q[t].reshape(3, 1, 1)), t, p)
        evs.append(float(ev))
        jits.append(float(jit))
    assert np.all(np.isfinite(np.asarray(fac[0]))) and np.all(np.isfinite(np.asarray(fac[1])))
    assert abs(evs[1]) < 1e-12 and jits[1] > 0


@pytest.mark.slow
def test_stein_and_pathwise_agree_for_erf():
    pr = make_problem("he3", p=2, activation="erf", alpha=2.0, lr=1.0, steps=3)
    st = solve(pr, samples=32_000, seed=0, progress=False)
    pw = solve(pr, samples=32_000, seed=1, response="pathwise", progress=False)
    for name in ("m", "Q", "test_error"):
        a, b = getattr(st, name), getattr(pw, name)
        z = (a.value - b.value) / np.sqrt(a.error**2 + b.error**2 + 1e-30)
        assert np.max(np.abs(z)) < Z_MAX, (name, np.max(np.abs(z)))
    a, b = st.kernels["Gamma"], pw.kernels["Gamma"]
    z = (a.value - b.value) / np.sqrt(a.error**2 + b.error**2 + 1e-30)
    assert np.max(np.abs(z)) < Z_MAX


def test_pathwise_warns_for_relu():
    pr = make_problem("he2", p=1, activation="relu", alpha=2.0, lr=0.5, steps=1)
    with pytest.warns(UserWarning, match="non-smooth"):
        solve(pr, samples=2000, response="pathwise", progress=False)


def test_divergence_reports_step_and_keeps_partial():
    pr = make_problem("he3", p=2, activation="quadratic", alpha=2.0, lr=50.0, steps=12)
    with pytest.raises(DivergenceError, match="diverged at step") as info:
        solve(pr, samples=2000, seed=0, progress=False)
    err = info.value
    assert 0 < err.step <= 12
    assert err.partial.status == "diverged" and len(err.partial.step) == err.step
    assert np.all(np.isfinite(err.partial.Q.value))


@pytest.mark.parametrize(
    "kwargs,match",
    [
        (dict(alpha=-1.0), "alpha"),
        (dict(alpha=float("nan")), "alpha"),
        (dict(lr=-0.1), "lr"),
        (dict(lr=float("nan")), "lr"),
        (dict(steps=0), "steps"),
        (dict(p=0), "p"),
        (dict(m0=np.zeros((3, 2))), "m0"),
        (dict(qperp0=np.array([[1.0, 2.0], [2.0, 1.0]])), "qperp0"),
        (dict(target="nope"), "target"),
        (dict(activation="nope"), "activation"),
        (dict(second_layer="nope"), "second_layer"),
        (dict(schedule="sometimes"), "schedule"),
        (dict(noise=-1.0), "noise"),
        (dict(ridge=-1.0), "ridge"),
    ],
)
def test_bad_problem_input(kwargs, match):
    kw = dict(target="tanh_he3")
    kw.update(kwargs)
    with pytest.raises(DMFTInputError, match=match):
        make_problem(**kw)


def test_bad_solve_input():
    pr = make_problem("he2", p=1, steps=2)
    with pytest.raises(DMFTInputError, match="samples"):
        solve(pr, samples=10)
    with pytest.raises(DMFTInputError, match="replicas"):
        solve(pr, samples=1000, replicas=1)
    with pytest.raises(DMFTInputError, match="response"):
        solve(pr, samples=1600, response="magic")
    with pytest.raises(DMFTInputError, match="chunk_size"):
        solve(pr, samples=1600, chunk_size=0)
    with pytest.raises(DMFTInputError, match="seed"):
        solve(pr, samples=1600, seed=-1)
    with pytest.raises(DMFTInputError, match="problem"):
        solve("he2", samples=1600)


def test_float64_without_x64_refused():
    pr = make_problem("he2", p=1, steps=2)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(DMFTInputError, match="x64"):
            solve(pr, samples=1600, dtype="float64")
    finally:
        jax.config.update("jax_enable_x64", True)


@pytest.mark.slow
def test_general_batch_schedules():
    """repeat:2 equals reuse while the first batch is in use; a list of distinct batches equals
    fresh in law; kernels vanish across different batches."""
    kw = dict(p=2, activation="relu", alpha=3.0, lr=0.2, steps=3)
    reuse = solve(make_problem("tanh_he3", **kw), samples=32_000, seed=5, progress=False)
    rep2 = solve(make_problem("tanh_he3", schedule="repeat:2", **kw), samples=32_000, seed=5,
                 progress=False)
    fresh = solve(make_problem("tanh_he3", schedule="fresh", **kw), samples=32_000, seed=5,
                  progress=False)
    lst = solve(make_problem("tanh_he3", schedule=[0, 1, 2], **kw), samples=32_000, seed=6,
                progress=False)
    assert rep2.problem.batches.tolist() == [0, 0, 1, 1]
    np.testing.assert_allclose(rep2.m.value[:3], reuse.m.value[:3], rtol=1e-9, atol=1e-12)
    np.testing.assert_allclose(rep2.Q.value[:3], reuse.Q.value[:3], rtol=1e-9, atol=1e-12)
    assert np.max(np.abs(rep2.Q.value[3] - reuse.Q.value[3])) > 1e-2
    for name in ("m", "Q"):
        a, b = getattr(fresh, name), getattr(lst, name)
        z = (a.value - b.value) / np.sqrt(a.error**2 + b.error**2 + 1e-30)
        assert np.max(np.abs(z)) < Z_MAX
    C, G = rep2.kernels["C"].value, rep2.kernels["Gamma"].value
    assert np.all(C[2, :2] == 0) and np.all(G[2, :2] == 0) and np.all(C[0, 2:] == 0)
    assert np.all(np.abs(C[3, 2]) > 0) and np.all(np.abs(G[3, 2]) > 0)


def test_bad_schedule():
    for bad in ("repeat:0", "sometimes", [0, 1], [0, -1, 2]):
        with pytest.raises(DMFTInputError, match="schedule"):
            make_problem("he2", steps=3, schedule=bad)


def test_noisy_response_is_reported():
    """Small η with a smooth activation: Stein's Γ is dominated by noise and solve says so."""
    pr = make_problem("he3", p=2, activation="erf", alpha=2.0, lr=0.2, steps=8, m0=0.2)
    with pytest.warns(RuntimeWarning, match="Monte Carlo error above"):
        solve(pr, samples=16_000, seed=0, progress=False)


def test_float32_matches_float64():
    """Same seed → same normals in both dtypes (drawn in float64, rounded), so the difference is
    float32 arithmetic alone. It must stay far below the Monte Carlo error: < 5% of one
    standard error for m, Q and the train loss (at this seed: 0.3% at most, |Δ| <= 1.2e-5), and
    < 1e-4 absolute for the test error (whose SE is 0 at t = 0)."""
    pr = make_problem("tanh_he3", p=2, activation="relu", alpha=3.0, lr=0.2, steps=6)
    a = solve(pr, samples=64_000, seed=0, progress=False)
    b = solve(pr, samples=64_000, seed=0, progress=False, dtype="float32")
    assert np.asarray(b.m.value).dtype == np.float32 or b.settings["dtype"] == "float32"
    for name in ("m", "Q", "train_loss"):
        est32, est64 = getattr(b, name), getattr(a, name)
        d = np.abs(np.asarray(est32.value, np.float64) - np.asarray(est64.value))
        se = np.asarray(est64.error)
        assert np.all(se[1:] > 0)
        assert np.max(d[1:] / se[1:]) < 0.05, name
        assert np.max(d[0]) < 1e-5, name  # t = 0: deterministic up to rounding
    d_eg = np.abs(np.asarray(b.test_error.value, np.float64) - np.asarray(a.test_error.value))
    assert np.max(d_eg) < 1e-4


# a schedule of every kind the regression registry dispatches on (``Structure.mode``)
SCHEDULE_OF_MODE = {"reuse": "reuse", "fresh": "fresh", "general": "repeat:2"}


def test_every_regression_kind_has_a_schedule():
    assert set(SCHEDULE_OF_MODE) == set(REGRESSIONS)


@pytest.mark.parametrize("response, mode", [
    # stein-reuse stays in the default suite (with test_chunk_size_invariance_and_reproducibility)
    pytest.param(r, m, marks=[pytest.mark.slow] if (r == "pathwise" or m != "reuse") else [])
    for r, m in itertools.product(RESPONSE_CLASSES, REGRESSIONS)])
def test_every_strategy_is_chunk_invariant_and_reproducible(response, mode):
    """Every response x regression: chunks with padding (250 samples per replica in chunks of
    100) give the unchunked result, and the same seed gives bitwise the same result."""
    activation = "erf" if RESPONSE_CLASSES[response].smooth_only else "relu"
    pr = make_problem("tanh_he3", activation=activation, alpha=2.0, lr=0.5, steps=3,
                      schedule=SCHEDULE_OF_MODE[mode])
    a = solve(pr, samples=4000, seed=7, chunk_size=None, response=response, progress=False)
    b = solve(pr, samples=4000, seed=7, chunk_size=100, response=response, progress=False)
    c = solve(pr, samples=4000, seed=7, chunk_size=None, response=response, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_allclose(getattr(b, name).value, getattr(a, name).value, rtol=1e-11,
                                   atol=1e-13)
        assert np.array_equal(getattr(c, name).value, getattr(a, name).value)
    np.testing.assert_allclose(b.kernels["Gamma"].value, a.kernels["Gamma"].value, rtol=1e-9,
                               atol=1e-11)
    for name in ("C", "Gamma"):
        assert np.array_equal(c.kernels[name].value, a.kernels[name].value)


@pytest.mark.parametrize("schedule, response, chunk", [
    ("reuse", "stein", None), ("fresh", "stein", 100), ("repeat:2", "stein", 100),
    ("reuse", "pathwise", 100), ("sgd:0.5", "stein", 100), ("epochs:2", "stein", None),
])
def test_memory_estimate_is_the_resident_state(schedule, response, chunk):
    """``memory_estimate(...)['state']`` equals, byte for byte, the sweep's state arrays."""
    import jax.numpy as jnp

    from dmft import solver
    from dmft.solver import _state, _structure

    pr = make_problem("tanh_he3", activation="erf", steps=3, schedule=schedule)
    samples, replicas = 4000, 16
    n_real = samples // replicas
    c = n_real if chunk is None else chunk
    st = _structure.make_structure(pr, n_real, c, response, jnp.dtype("float64"))
    numbers = pr.numbers("float64")
    keys = jax.random.split(jax.random.key(0), replicas)
    draws = jax.vmap(lambda kk: _state.draw_replica(st, kk))(keys)
    state = jax.vmap(lambda dr: _state.init_state(st, numbers, dr))(draws)
    actual = sum(x.nbytes for x in jax.tree.leaves(state))
    est = solver.memory_estimate(pr, samples, replicas=replicas, chunk_size=chunk,
                                 response=response)
    assert est["state"] == actual
    assert est["peak"] > est["state"]


def test_solve_refuses_what_cannot_fit(monkeypatch):
    """A solve whose resident arrays exceed the free memory fails before any compute, naming
    `samples`; one whose estimated peak exceeds it warns."""
    from dmft import solver
    from dmft.solver import _memory

    pr = make_problem("tanh_he3", steps=3)
    est = solver.memory_estimate(pr, 4000)
    monkeypatch.setattr(_memory, "free_memory_bytes", lambda: (est["state"] - 1, "test device"))
    with pytest.raises(DMFTInputError, match=r"`samples` too large.*samples=4000.*test device"):
        solve(pr, samples=4000, progress=False)
    monkeypatch.setattr(_memory, "free_memory_bytes", lambda: (est["peak"] - 1, "test device"))
    with pytest.warns(ResourceWarning, match="may run out of memory"):
        solve(pr, samples=4000, progress=False)
