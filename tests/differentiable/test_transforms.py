"""Every transformation of dmft.solve_fn against another way to compute the same numbers (slow:
each transformation compiles its own program, ~10-30 s each on a 2-core CPU)."""

from __future__ import annotations

import dataclasses

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import dmft

pytestmark = pytest.mark.slow

SAMPLES, REPLICAS, SEED = 4000, 4, 5


def problem(activation="tanh", p=2):
    return dmft.make_problem("tanh_he3", p=p, activation=activation, alpha=2.0,
                             lr=[0.4, 0.7, 0.3], steps=3, schedule="repeat:2", ridge=0.02)


@pytest.fixture(scope="module")
def case():
    pr = problem()
    f = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS)
    return pr, f, dmft.numbers(pr)


def lr_fn(f, nb):
    """The observables at the last step as a function of the first T learning rates."""
    def g(x):
        out = f(dataclasses.replace(nb, lr=jnp.concatenate([x, jnp.zeros(1)])))
        return jnp.stack([out["m_norm"][-1], out["test_error"][-1], out["Q"][-1, 0, 0]])
    return g


def test_jvp_equals_grad_dot_v(case):
    _, f, nb = case
    g = lr_fn(f, nb)
    x, v = jnp.asarray(nb.lr[:3]), jnp.asarray([0.3, -1.0, 0.5])
    _, tangent = jax.jvp(lambda x: g(x)[1], (x,), (v,))
    grad = jax.grad(lambda x: g(x)[1])(x)
    assert float(tangent) == pytest.approx(float(grad @ v), rel=1e-10)


def test_jacfwd_equals_jacrev(case):
    _, f, nb = case
    g = lr_fn(f, nb)
    x = jnp.asarray(nb.lr[:3])
    np.testing.assert_allclose(jax.jacfwd(g)(x), jax.jacrev(g)(x), rtol=1e-10, atol=1e-14)


def test_vmap_equals_loop_and_jit_equals_eager(case):
    _, f, nb = case
    lrs = np.array([[0.4, 0.7, 0.3, 0.0], [0.2, 0.2, 0.2, 0.0], [0.6, 0.1, 0.9, 0.0]])
    stacked = dataclasses.replace(nb, lr=lrs)
    axes = jax.tree.map(lambda _: None, nb)
    axes = dataclasses.replace(axes, lr=0)
    batched = jax.vmap(f, in_axes=(axes,))(stacked)
    jitted = jax.jit(f)
    for i, lr in enumerate(lrs):
        eager = f(dataclasses.replace(nb, lr=lr))
        jit_out = jitted(dataclasses.replace(nb, lr=lr))
        for name in ("m", "Q", "test_error", "train_loss"):
            np.testing.assert_allclose(batched[name][i], eager[name], rtol=1e-12, atol=1e-15)
            np.testing.assert_allclose(jit_out[name], eager[name], rtol=1e-12, atol=1e-15)


# under jax.jit the CPU runtime wraps equinox's error in a JaxRuntimeError with the same text
RAISED = (eqx.EquinoxRuntimeError, jax.errors.JaxRuntimeError)


def test_nonfinite_under_jit_and_grad(case):
    _, f, nb = case
    bad = dataclasses.replace(nb, noise=jnp.asarray(-1.0))
    with pytest.raises(RAISED, match="diverged at step 0"):
        jax.jit(f)(bad)
    with pytest.raises(RAISED, match="diverged at step 0"):
        jax.grad(lambda n: f(n)["m_norm"][-1])(bad)


def _fd_check(f, nb, entries, eps, tol):
    def obj(n):
        out = f(n)
        return out["m_norm"][-1] + out["test_error"][-1]

    g = jax.grad(obj)(nb)
    worst = 0.0
    for name, idx in entries:
        def at(s):
            v = np.array(getattr(nb, name), dtype=np.float64)
            v[idx] += s
            return float(obj(dataclasses.replace(nb, **{name: v})))
        fd = (at(eps) - at(-eps)) / (2 * eps)
        ad = float(np.asarray(getattr(g, name))[idx])
        worst = max(worst, abs(ad - fd) / max(abs(fd), 1e-12))
    assert worst <= tol, worst
    return worst


ENTRIES = [("lr", (0,)), ("lr", (1,)), ("lr", (2,)), ("alpha", ()), ("ridge", ()),
           ("m0", (0, 0)), ("qperp0", (0, 1)), ("second_layer", (1,))]


def test_grad_matches_fd_tanh(case):
    """Central differences, step 1e-5, float64: truncation ~1e-10, rounding ~1e-11 relative;
    the tolerance 1e-5 of the brief holds with a wide margin (measured ~1e-8)."""
    _, f, nb = case
    _fd_check(f, nb, ENTRIES, 1e-5, 1e-5)


def test_grad_matches_fd_relu_without_crossings():
    """ReLU at fixed samples is piecewise smooth: a sample whose field crosses 0 makes g jump by
    O(1/N). Reverse mode gives the derivative of the smooth piece; central differences agree
    with it when no sample crosses within ±eps (eps = 1e-7 here: crossings within ±eps have
    probability ~N·eps), not with a larger step that straddles crossings."""
    pr = problem("relu")
    f = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS)
    _fd_check(f, dmft.numbers(pr), ENTRIES, 1e-7, 1e-5)


def test_checkpoint_does_not_change_gradients(case):
    pr, f, nb = case
    g1 = jax.grad(lambda n: f(n)["test_error"][-1])(nb)
    f0 = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS, checkpoint=False)
    g0 = jax.grad(lambda n: f0(n)["test_error"][-1])(nb)
    np.testing.assert_allclose(g1.lr, g0.lr, rtol=1e-12, atol=1e-16)


def test_kink_width_keeps_values_and_adds_the_dirac_term():
    """kink_width changes derivatives only: the values are bitwise those without it. Its extra
    term in d/dη is E[ℓ'(f) a_j φ_w(h_j) ∂h_j/∂η]: the two gradients differ."""
    pr = problem("relu")
    nb = dmft.numbers(pr)
    f0 = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS)
    fk = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS, kink_width=0.1)
    for name, v in f0(nb).items():
        np.testing.assert_array_equal(fk(nb)[name], v)
    g0 = jax.grad(lambda n: f0(n)["m_norm"][-1])(nb).lr[:3]
    gk = jax.grad(lambda n: fk(n)["m_norm"][-1])(nb).lr[:3]
    assert np.all(np.isfinite(gk)) and np.max(np.abs(gk - g0)) > 1e-4
