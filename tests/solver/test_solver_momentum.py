"""Heavy-ball momentum and Nesterov: the DMFT against exact results and against plain GD.

The exact reference is the linear model's Marchenko–Pastur closed form with the three-term
recursion of the momentum (``dmft.baselines.linear_gd(momentum=, nesterov=)``, derived in
docs/THEORY.md §10). It shares nothing with the solver but the problem definition.
"""

import dataclasses

import numpy as np
import pytest

from dmft import DMFTInputError
from dmft.baselines import linear_gd, solve_flow, solve_online
from dmft.model import make_problem
from dmft.solver import solve


def _linear(alpha, lr, steps, beta, nesterov, ridge=0.0, noise=0.0, m0=0.0):
    return make_problem("linear", p=1, activation="linear", second_layer=[1.0], alpha=alpha,
                        lr=lr, steps=steps, ridge=ridge, noise=noise, m0=m0, momentum=beta,
                        nesterov=nesterov)


@pytest.mark.parametrize(
    "alpha,lr,beta,ridge,noise,m0,nesterov",
    [(0.5, 0.3, 0.5, 0.0, 0.0, 0.0, False), (3.0, 0.05, 0.9, 0.0, 0.0, 0.0, False),
     (2.0, 0.1, 0.7, 0.1, 0.2, 0.3, True), (0.7, 0.4, 0.3, 0.05, 0.1, -0.2, True)],
)
def test_linear_momentum_matches_marchenko_pastur(alpha, lr, beta, ridge, noise, m0, nesterov):
    """m, Q and e_g of the DMFT equal the MP closed form with momentum up to T = 50.

    The response and regression are exact for the linear model, so the only error left is the
    clipping of the factor's Schur complements at the momentum floor 1e-6 (relative): the
    measured differences are <= 9.2e-8 over these cases (<= 1.1e-7 at T = 100), and we require
    1e-6, while the momentum
    moves m away from plain GD's by 0.048 to 0.8 (asserted > 0.02)."""
    T = 50
    res = solve(_linear(alpha, lr, T, beta, nesterov, ridge, noise, m0), samples=8000, seed=1,
                progress=False)
    ex = linear_gd(alpha, np.full(T, lr), ridge, noise, m0, momentum=beta, nesterov=nesterov)
    plain = linear_gd(alpha, np.full(T, lr), ridge, noise, m0)
    for name in ("m", "Q", "test_error"):
        got = np.asarray(getattr(res, name).value).reshape(T + 1)
        assert np.max(np.abs(got - ex[name])) < 1e-6, (name, np.max(np.abs(got - ex[name])))
    assert np.max(np.abs(ex["m"] - plain["m"])) > 0.02


def test_closed_form_recursions_at_two_steps():
    """The closed form's first two steps by hand (S has MP moments E x = α, E x² = α² + α).

    With e = W − W*, m0 = 0, q0 = 1, λ = 0, no noise: e_1 = (1 − ηS) e_0 for both methods;
    heavy ball e_2 = ((1 + β − ηS)(1 − ηS) − β) e_0, Nesterov e_2 = (1 − ηS)((1 + β)(1 − ηS) − β)
    e_0, and m_t = 1 − E[P_t(x)] (e_0 = −W* + W⊥_0, only −W* projects on W*)."""
    alpha, eta, beta = 1.5, 0.2, 0.6
    m1 = eta * alpha
    ex2 = eta**2 * (alpha**2 + alpha)  # E (ηx)²
    p2_hb = 1 - (2 + beta) * eta * alpha + ex2
    p2_ne = (1 + beta) * (1 - 2 * eta * alpha + ex2) - beta * (1 - eta * alpha)
    for nest, p2 in ((False, p2_hb), (True, p2_ne)):
        ex = linear_gd(alpha, [eta, eta], momentum=beta, nesterov=nest)
        assert abs(ex["m"][1] - m1) < 1e-12, (nest, ex["m"])
        assert abs(ex["m"][2] - (1 - p2)) < 1e-12, (nest, ex["m"], 1 - p2)


def _small(**kw):
    base = dict(p=2, activation="tanh", alpha=2.0, lr=0.3, steps=4)
    base.update(kw)
    return make_problem("he3", **base)


# these compare two programs on the same samples, not statistics: a small Monte Carlo size's
# noisy-response warning is expected
QUIET = pytest.mark.filterwarnings("ignore:the response:RuntimeWarning")


@QUIET
def test_zero_momentum_is_plain_gd_bitwise():
    """β = 0 given explicitly (a per-step array of zeros in the Problem) runs the same program
    as plain GD: every output is bitwise equal."""
    plain = _small()
    zero = dataclasses.replace(plain, momentum=np.zeros(plain.steps),
                               momentum_a=np.zeros(plain.steps))
    a = solve(plain, samples=4000, replicas=2, seed=3, progress=False)
    b = solve(zero, samples=4000, replicas=2, seed=3, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        assert np.array_equal(getattr(a, name).value, getattr(b, name).value), name
    assert np.array_equal(a.kernels["R"].value, b.kernels["R"].value)


@QUIET
def test_nesterov_with_zero_momentum_is_plain_gd():
    """Nesterov with β = 0 is GD: the look-ahead is the iterate and the map to the iterates is
    the identity (equal to 1e-12; not bitwise: another compiled program)."""
    a = solve(_small(), samples=4000, replicas=2, seed=3, progress=False)
    b = solve(_small(nesterov=True), samples=4000, replicas=2, seed=3, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        x, y = getattr(a, name).value, getattr(b, name).value
        assert np.max(np.abs(x - y)) < 1e-12 * max(1.0, np.max(np.abs(x))), name


@QUIET
def test_new_momentum_does_not_recompile():
    """β is a traced number: a second value reuses the compiled sweep."""
    from dmft.solver._step import TRACE_COUNT

    solve(_small(momentum=0.3), samples=4000, replicas=2, progress=False)
    before = TRACE_COUNT[0]
    res = solve(_small(momentum=0.6), samples=4000, replicas=2, progress=False)
    assert TRACE_COUNT[0] == before
    assert np.max(np.abs(res.m.value)) > 0  # it ran


@pytest.mark.parametrize(
    "kw,needle",
    [(dict(momentum=1.0), "`momentum` must be in [0, 1)"),
     (dict(momentum=-0.1), "`momentum` must be in [0, 1)"),
     (dict(momentum=[0.1, 0.2]), "`momentum` must be a scalar or have shape (4,)"),
     (dict(momentum_a=[0.0, 0.0, 1.5, 0.0]), "`momentum_a[2]` must be in [0, 1)"),
     (dict(nesterov="yes"), "`nesterov` must be True or False")],
)
def test_bad_momentum_is_refused(kw, needle):
    with pytest.raises(DMFTInputError) as exc:
        _small(**kw)
    assert needle in str(exc.value).replace("Argument ", ""), str(exc.value)


def test_baselines_refuse_momentum():
    """Gradient flow and the online ODEs are plain-GD limits: momentum is refused by name."""
    pr = make_problem("he3", p=1, activation="erf", lr=0.1, steps=4, momentum=0.5)
    with pytest.raises(DMFTInputError, match="`momentum` must be 0"):
        solve_flow(pr, 1.0, dt=0.25)
    with pytest.raises(DMFTInputError, match="`momentum` must be 0"):
        solve_online(pr, 1.0)


def test_problem_round_trip_keeps_momentum():
    from dmft.model import Problem

    pr = _small(momentum=[0.0, 0.2, 0.4, 0.6], momentum_a=0.1, nesterov=True)
    back = Problem.from_dict(pr.to_dict())
    assert np.array_equal(back.momentum_per_step, pr.momentum_per_step)
    assert np.array_equal(back.second_layer_momentum, np.full(4, 0.1))
    assert back.nesterov is True
