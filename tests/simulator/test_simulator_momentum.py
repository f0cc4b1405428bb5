"""The simulator's momentum and Nesterov steps against the exact linear-model trajectories.

The simulator is the arbiter of the DMFT; here it is checked on its own against the
Marchenko–Pastur closed form of ``dmft.baselines.linear_gd`` (docs/THEORY.md §10), which
shares nothing with it but the problem definition.

Tolerance: z = (sim − exact) / sqrt(SE² + (c/d)²), max |z| < 4 over every step of m, Q and the
test error, with the finite-size allowance c = 4: at d = 250 and 1000 (8 seeds, this setting)
d·|sim − exact| was at most 3.9 (Q, d = 250), and it did not grow as d → ∞ faster than the
Monte Carlo error allows.
"""

import dataclasses

import numpy as np
import pytest

from dmft.baselines import linear_gd
from dmft.model import make_problem
from dmft.simulator import simulate

C_FINITE = 4.0


@pytest.mark.parametrize("nesterov", [False, True])
def test_linear_momentum_simulation_matches_closed_form(nesterov):
    T, d = 20, 500
    pr = make_problem("linear", p=1, activation="linear", second_layer=[1.0], alpha=2.0,
                      lr=0.1, steps=T, momentum=0.7, ridge=0.1, noise=0.2, m0=0.3,
                      nesterov=nesterov)
    sim = simulate(pr, d=d, seeds=8, seed=0, progress=False)
    ex = linear_gd(2.0, np.full(T, 0.1), 0.1, 0.2, 0.3, momentum=0.7, nesterov=nesterov)
    plain = linear_gd(2.0, np.full(T, 0.1), 0.1, 0.2, 0.3)
    for name in ("m", "Q", "test_error"):
        est = getattr(sim, name)
        v, e = np.asarray(est.value).reshape(T + 1), np.asarray(est.error).reshape(T + 1)
        z = (v - ex[name]) / np.sqrt(e**2 + (C_FINITE / d) ** 2)
        assert np.max(np.abs(z)) < 4.0, (name, np.max(np.abs(z)))
        # not vacuous: the momentum moves the exact trajectory by many allowances
        assert np.max(np.abs(ex[name] - plain[name])) > 10 * C_FINITE / d, name


def test_zero_momentum_simulation_is_plain_gd_bitwise():
    plain = make_problem("he3", p=2, activation="relu", alpha=2.0, lr=0.3, steps=3)
    zero = dataclasses.replace(plain, momentum=np.zeros(3), momentum_a=np.zeros(3))
    a = simulate(plain, d=200, seeds=2, seed=4, progress=False)
    b = simulate(zero, d=200, seeds=2, seed=4, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        assert np.array_equal(getattr(a, name).value, getattr(b, name).value), name
