"""DMFT against the independent finite-d simulator (statistical), and the d → ∞ fit.

Tolerance: z = (DMFT − sim) / sqrt(SE_dmft² + SE_sim² + (c/d)²) with max |z| < 4 over every entry
of m, Q and the test error at every step. c/d is a finite-size allowance: in the validation run
(validation/validate.py, d ∈ {500, 1000, 2000, 4000}, 32 seeds) d·|sim(d) − DMFT| stayed below 3.5
for tanh_he3 at d = 500 and 1000, so we take c = 3.5.
"""

import os
import sys

import numpy as np
import pytest

from dmft import make_problem, solve
from dmft.simulator import simulate

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "..", "validation"))
from validate import extrapolate  # noqa: E402

C_FINITE = 3.5


@pytest.mark.parametrize("schedule", ["reuse", "fresh"])
def test_dmft_agrees_with_simulation(schedule):
    problem = make_problem("tanh_he3", p=2, activation="relu", alpha=3.0, lr=0.2, steps=3,
                           schedule=schedule)
    d = 500
    th = solve(problem, samples=64_000, seed=0, progress=False)
    sim = simulate(problem, d=d, seeds=16, seed=1, progress=False)
    for name in ("m", "Q", "test_error"):
        a, b = getattr(th, name), getattr(sim, name)
        se = np.sqrt(a.error**2 + b.error**2 + (C_FINITE / d) ** 2)
        z = (a.value - b.value) / se
        assert np.max(np.abs(z)) < 4.0, (name, np.max(np.abs(z)))
    # the simulation's overlaps really moved away from 0 (the check is not vacuous)
    assert np.max(np.abs(sim.m.value[-1])) > 10 * C_FINITE / d


def test_extrapolation_recovers_intercept():
    ds = [500, 1000, 2000, 4000]
    rng = np.random.default_rng(0)
    a_true, b_true = np.array([0.3, -0.1]), np.array([20.0, 5.0])
    se = 1e-3
    vals = [a_true + b_true / d + se * rng.standard_normal(2) for d in ds]
    errs = [np.full(2, se) for _ in ds]
    a, se_a, chi2 = extrapolate(ds, vals, errs)
    assert np.all(np.abs(a - a_true) < 4 * se_a)
    assert np.all(se_a > 0.3 * se) and np.all(se_a < 5 * se)
    assert np.all(chi2 < 10)


# repeat:2 is also checked, with momentum, by test_agreement_momentum.py in the default suite
@pytest.mark.parametrize("schedule,lr_a", [pytest.param("repeat:2", 0.0, marks=pytest.mark.slow),
                                           ("reuse", 0.5)])
def test_schedules_and_trained_second_layer_agree_with_simulation(schedule, lr_a):
    """repeat:2 and a trained second layer against the simulator, same rule."""
    problem = make_problem("tanh_he3", p=2, activation="relu", alpha=3.0, lr=0.2, steps=3,
                           schedule=schedule, lr_a=lr_a)
    d = 500
    th = solve(problem, samples=64_000, seed=0, progress=False)
    sim = simulate(problem, d=d, seeds=16, seed=1, progress=False)
    names = ("m", "Q", "test_error") + (("a",) if lr_a > 0 else ())
    for name in names:
        a, b = getattr(th, name), getattr(sim, name)
        se = np.sqrt(a.error**2 + b.error**2 + (C_FINITE / d) ** 2)
        z = (a.value - b.value) / se
        assert np.max(np.abs(z)) < 4.0, (name, np.max(np.abs(z)))
    if lr_a > 0:  # the second layer really moved
        assert np.max(np.abs(th.a.value[-1] - th.a.value[0])) > 0.1
    else:
        assert th.a is None and sim.a is None


@pytest.mark.parametrize("schedule", ["sgd:0.5", "epochs:2"])
def test_minibatch_schedules_agree_with_simulation(schedule):
    """Mini-batch SGD on one dataset: DMFT with per-sample selections s_t against
    the simulator (Bernoulli masks / a random partition per epoch), same rule as above; and the
    mini-batch noise is visible: the simulation differs from full-batch reuse."""
    kw = dict(p=2, activation="relu", alpha=3.0, lr=0.5, steps=4)
    problem = make_problem("tanh_he3", schedule=schedule, **kw)
    d = 500
    th = solve(problem, samples=64_000, seed=0, progress=False)
    sim = simulate(problem, d=d, seeds=16, seed=1, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        a, b = getattr(th, name), getattr(sim, name)
        se = np.sqrt(a.error**2 + b.error**2 + (C_FINITE / d) ** 2)
        z = (a.value - b.value) / se
        assert np.max(np.abs(z)) < 4.0, (name, np.max(np.abs(z)))
    # full batch as sgd:1 (= reuse exactly, tests/test_minibatch.py): b is traced, no recompile
    full = solve(make_problem("tanh_he3", schedule="sgd:1", **kw), samples=64_000, seed=0,
                 progress=False)
    zq = (th.Q.value - full.Q.value) / np.sqrt(th.Q.error**2 + full.Q.error**2 + 1e-30)
    assert np.max(np.abs(zq)) > 6.0, np.max(np.abs(zq))
