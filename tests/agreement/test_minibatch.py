"""Mini-batch SGD on one dataset (``sgd:b``, ``epochs:B``) and the loss registry.

Exact checks only (the statistical agreement with the simulator is in test_agreement.py):
b = 1 is full-batch reuse to rounding, in the DMFT and in the simulator; b is a traced number
(a new b does not recompile); the draws are chunk-invariant; the simulator's epochs are a
partition; bad schedules and ±1-label violations are refused naming the flag; the logistic
loss's gradient and its classification error against closed forms.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft
from dmft import DMFTInputError
from dmft.model import get_activation, loss_grad_f, loss_grad_h, make_problem
from dmft.simulator import simulate
from dmft.simulator._draws import minibatch_scale
from dmft.solver import TRACE_COUNT

KW = dict(p=2, activation="relu", alpha=3.0, lr=0.5, steps=3)


def _solve(schedule, **extra):
    return dmft.solve(make_problem("tanh_he3", schedule=schedule, **KW), samples=2000,
                      replicas=4, seed=3, progress=False, **extra)


@pytest.fixture(scope="module")
def reuse():
    return _solve("reuse")


@pytest.mark.parametrize("schedule", ["sgd:1", "epochs:1"])
def test_full_fraction_equals_reuse_dmft(reuse, schedule):
    out = _solve(schedule)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_allclose(getattr(out, name).value, getattr(reuse, name).value,
                                   rtol=0, atol=1e-12)
    np.testing.assert_allclose(out.kernels["C"].value, reuse.kernels["C"].value, atol=1e-12)


@pytest.mark.filterwarnings("ignore:schedule=.*selects on average:UserWarning")
def test_new_fraction_does_not_recompile_and_changes_the_result(reuse):
    a = _solve("sgd:0.5")
    before = TRACE_COUNT[0]
    b = _solve("sgd:0.25")
    assert TRACE_COUNT[0] == before  # b is a traced number
    assert np.max(np.abs(a.Q.value - b.Q.value)) > 1e-3
    assert np.max(np.abs(a.Q.value - reuse.Q.value)) > 1e-3
    # step 0 → 1 is the same in expectation; the selection only adds noise there
    assert np.all(np.abs(a.m.value[1] - reuse.m.value[1]) < 6 * (a.m.error[1] + 1e-3))


@pytest.mark.slow  # one more compile (~30 s on the shared CPU); the draws share z's block scheme
def test_selection_is_chunk_invariant():
    a = _solve("sgd:0.5")
    b = _solve("sgd:0.5", chunk_size=128)
    np.testing.assert_allclose(b.Q.value, a.Q.value, rtol=1e-12, atol=1e-13)
    np.testing.assert_allclose(b.m.value, a.m.value, rtol=1e-12, atol=1e-13)


def test_full_fraction_equals_reuse_simulator():
    kw = dict(KW, steps=2)
    r = simulate(make_problem("tanh_he3", **kw), d=40, seeds=2, seed=1, progress=False)
    for schedule in ("sgd:1", "epochs:1"):
        o = simulate(make_problem("tanh_he3", schedule=schedule, **kw), d=40, seeds=2, seed=1,
                     progress=False)
        for name in ("m", "Q", "test_error", "train_loss"):
            np.testing.assert_allclose(getattr(o, name).value, getattr(r, name).value, rtol=0,
                                       atol=1e-12)


def test_simulator_epochs_are_a_partition_and_sgd_has_fraction_b():
    pr = make_problem("tanh_he3", schedule="epochs:3", **KW)
    key = jax.random.key(0)
    n, numbers = 11, pr.numbers()
    S = np.stack([np.asarray(minibatch_scale(numbers, key, t, n, "float64")) for t in range(6)])
    sel = S > 0
    assert np.all(S[sel] == 3.0)
    for e in range(2):  # every sample exactly once per epoch, sizes differ by at most one
        assert np.all(sel[3 * e : 3 * e + 3].sum(axis=0) == 1)
        sizes = sel[3 * e : 3 * e + 3].sum(axis=1)
        assert sizes.max() - sizes.min() <= 1
    assert not np.array_equal(sel[:3], sel[3:])  # a fresh partition per epoch
    pr = make_problem("tanh_he3", schedule="sgd:0.25", **KW)
    S = np.asarray(minibatch_scale(pr.numbers(), key, 0, 40_000, "float64"))
    assert abs(np.mean(S > 0) - 0.25) < 4 * math.sqrt(0.25 * 0.75 / 40_000)
    assert abs(np.mean(S) - 1.0) < 0.02  # the expected step is the full-batch step


@pytest.mark.parametrize("schedule,word", [
    ("sgd:0", "(0, 1]"), ("sgd:-0.5", "(0, 1]"), ("sgd:1.5", "(0, 1]"), ("sgd:x", "(0, 1]"),
    ("epochs:0", "B >= 1"), ("epochs:2.5", "integer"), ("epochs:2.0", "integer"),
])
def test_bad_minibatch_schedules_are_refused(schedule, word):
    with pytest.raises(DMFTInputError, match="`schedule`") as exc:
        make_problem("he3", schedule=schedule)
    assert word in str(exc.value)


def test_schedule_strings_are_canonical():
    assert make_problem("he3", schedule="sgd:1.0").schedule == "sgd:1"
    assert make_problem("he3", schedule="sgd:0.25").fraction == 0.25
    p = make_problem("he3", schedule="epochs:4", steps=9)
    assert (p.schedule, p.fraction, p.epoch_length) == ("epochs:4", 0.25, 4)
    assert np.all(p.batches == 0)
    q = dmft.Problem.from_dict(p.to_dict())
    assert q.schedule == "epochs:4"


def test_logistic_needs_pm1_labels():
    with pytest.raises(DMFTInputError, match="`loss`='logistic' needs labels"):
        make_problem("he3", loss="logistic")
    with pytest.raises(DMFTInputError, match="label noise must be 0"):
        make_problem("sign_z1z2z3", p=3, loss="logistic", noise=0.1)
    with pytest.raises(DMFTInputError, match="`loss`"):
        make_problem("he3", loss="hinge")
    p = make_problem("sign_z1z2z3", p=3, activation="erf", loss="logistic")
    assert dmft.Problem.from_dict(p.to_dict()).loss == "logistic"


def test_logistic_gradient_matches_finite_differences():
    act = get_activation("tanh")
    a = jnp.asarray([0.7, -0.4])
    h = jnp.asarray([[0.3, -1.2], [2.0, 0.5]])
    y = jnp.asarray([1.0, -1.0])
    g = loss_grad_h(h, y, a, act, "logistic")
    eps = 1e-6
    for j in range(2):
        dh = jnp.zeros_like(h).at[:, j].set(eps)
        lp = dmft.model.loss(y, dmft.model.network_output(h + dh, a, act), "logistic")
        lm = dmft.model.loss(y, dmft.model.network_output(h - dh, a, act), "logistic")
        np.testing.assert_allclose(g[:, j], (lp - lm) / (2 * eps), rtol=1e-7, atol=1e-9)
    df = loss_grad_f(h, y, a, act, "logistic")
    assert np.all(np.sign(np.asarray(df)) == -np.asarray(y))


def test_classification_error_closed_form():
    """p = k = 1, linear student, sign target: P(sign h ≠ sign h*) = arccos(m/√Q)/π."""
    from dmft.observables import test_error, test_loss

    lin = dmft.custom_target(lambda z: jnp.sign(z[..., 0]), k=1, name="sign1")
    pr = make_problem(lin, p=1, activation="linear", second_layer=[1.0], loss="logistic")
    m = jnp.asarray([[[0.6]], [[0.0]], [[1.2]]])
    Q = jnp.asarray([[[1.0]], [[2.0]], [[1.69]]])
    err = np.asarray(test_error(pr, m, Q))
    exact = np.arccos(np.array([0.6, 0.0, 1.2 / 1.3])) / np.pi
    np.testing.assert_allclose(err, exact, atol=4e-3)
    tl = np.asarray(test_loss(pr, m, Q))
    assert np.all(tl > 0) and tl[2] < tl[0] < tl[1] + 0.2


def test_fresh_sample_average_is_continuous_in_Q():
    """The node average must not jump under rounding-level changes of a degenerate Q (t = 0:
    Q = I): the square root of Q − m mᵀ must be the symmetric one."""
    from dmft.observables import test_error, test_loss

    pr = make_problem("sign_z1z2z3", p=3, activation="erf", second_layer="ones",
                      loss="logistic")
    m = jnp.zeros((3, 3))
    rng = np.random.default_rng(0)
    for fn in (test_error, test_loss):
        ref = float(fn(pr, m, jnp.eye(3)))
        for _ in range(3):
            e = rng.standard_normal((3, 3)) * 1e-15
            assert abs(float(fn(pr, m, jnp.eye(3) + e + e.T)) - ref) < 1e-9
