"""Momentum and Nesterov: the DMFT against the independent simulator (statistical).

Same rule as tests/agreement/test_agreement.py: z = (DMFT − sim) / sqrt(SE_dmft² + SE_sim² +
(c/d)²), max |z| < 4 over every entry of m, Q and the test error at every step, c = 3.5. The
momentum must move the trajectory: the DMFT with β differs from plain GD's by more than 4
allowances somewhere (so the check is not the plain-GD check again).
"""

import numpy as np
import pytest

from dmft import make_problem, solve
from dmft.simulator import simulate

C_FINITE = 3.5
CASES = {
    "heavy_ball_repeat2": dict(schedule="repeat:2", momentum=0.6),
    "nesterov_epochs2_trained_a": dict(schedule="epochs:2", momentum=0.5, nesterov=True,
                                       lr_a=0.3, momentum_a=0.3),
    "nesterov_fresh_logistic": dict(schedule="fresh", momentum=0.5, nesterov=True),
}


def _check(name):
    kw = dict(CASES[name])
    base = dict(p=2, activation="relu", alpha=3.0, lr=0.2, steps=4)
    target = "tanh_he3"
    if name.endswith("logistic"):
        target = "sign_z1z2z3"
        base.update(p=3, activation="erf", lr=0.5, second_layer="ones", loss="logistic", m0=0.1)
    problem = make_problem(target, **base, **kw)
    plain = make_problem(target, **base, schedule=kw["schedule"], lr_a=kw.get("lr_a", 0.0))
    d = 500
    th = solve(problem, samples=64_000, seed=0, progress=False)
    th0 = solve(plain, samples=64_000, seed=0, progress=False)
    sim = simulate(problem, d=d, seeds=16, seed=1, progress=False)
    moved = 0.0
    for obs in ("m", "Q", "test_error"):
        a, b = getattr(th, obs), getattr(sim, obs)
        se = np.sqrt(a.error**2 + b.error**2 + (C_FINITE / d) ** 2)
        z = (a.value - b.value) / se
        assert np.max(np.abs(z)) < 4.0, (obs, np.max(np.abs(z)))
        moved = max(moved, np.max(np.abs(a.value - getattr(th0, obs).value) / se))
    assert moved > 4.0, moved


def test_heavy_ball_agrees_with_simulation():
    _check("heavy_ball_repeat2")


@pytest.mark.slow
@pytest.mark.parametrize("name", ["nesterov_epochs2_trained_a", "nesterov_fresh_logistic"])
def test_nesterov_agrees_with_simulation(name):
    _check(name)
