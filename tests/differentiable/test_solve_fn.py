"""dmft.solve_fn: values equal dmft.solve of the same seed, reverse-mode gradients equal central
finite differences of the same function, non-finite values and bad input stop with a clear error.

One small structure (he3, p = 1 erf, repeat:2, T = 3, 4000 samples in 4 replicas) compiled once
per transformation for the module; the slower transformations are in test_transforms.py (slow).
"""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import dmft
from dmft import DivergenceError, DMFTInputError

SAMPLES, REPLICAS, SEED = 4000, 4, 3


def small_problem(activation="erf", p=1, target="he3"):
    return dmft.make_problem(target, p=p, activation=activation, alpha=2.0, lr=[0.5, 0.8, 0.3],
                             steps=3, schedule="repeat:2", ridge=0.05, noise=0.1, m0=0.1)


@pytest.fixture(scope="module")
def case():
    pr = small_problem()
    f = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS)
    return pr, f, dmft.numbers(pr)


def objective(f):
    def obj(nb):
        out = f(nb)
        return out["m_norm"][-1] + out["test_error"][-1] + 0.1 * out["train_loss"][-1]
    return obj


def test_values_equal_solve(case):
    """The same seed gives dmft.solve's replica means: the same step function on the same draws
    (a scan instead of a while loop); only the mean over replicas is taken in jnp vs numpy."""
    pr, f, nb = case
    out = f(nb)
    tr = dmft.solve(pr, SAMPLES, seed=SEED, replicas=REPLICAS, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_allclose(out[name], getattr(tr, name).value, rtol=1e-12, atol=1e-14)
    assert out["m"].shape == (4, 1, 1) and out["m_norm"].shape == (4,)


def _fd(obj, nb, name, index, eps):
    def shifted(s):
        v = np.array(getattr(nb, name), dtype=np.float64)
        v[index] += s
        return float(obj(dataclasses.replace(nb, **{name: v})))
    return (shifted(eps) - shifted(-eps)) / (2 * eps)


def test_grad_matches_central_differences_erf(case):
    """Reverse mode (checkpointed scan) against central differences of the same seed, float64.

    Step 1e-5: the truncation error (eps² f''' ~ 1e-10) and the rounding error (1e-16 / eps ~
    1e-11) are both far below the 1e-5 relative tolerance; the measured agreement is ~1e-9."""
    _, f, nb = case
    obj = objective(f)
    g = jax.grad(obj)(nb)
    checks = [("lr", (0,)), ("lr", (1,)), ("lr", (2,)), ("alpha", ()), ("ridge", ()),
              ("noise", ()), ("m0", (0, 0)), ("qperp0", (0, 0)), ("second_layer", (0,))]
    for name, idx in checks:
        fd = _fd(obj, nb, name, idx, 1e-5)
        ad = float(np.asarray(getattr(g, name))[idx])
        assert abs(ad - fd) <= 1e-5 * max(abs(fd), 1e-8), (name, idx, ad, fd)
    # lr has T + 1 entries, the last unused: its gradient is exactly 0
    assert float(g.lr[-1]) == 0.0


def test_nonfinite_names_the_step(case):
    """A negative label-noise variance makes the labels NaN (√Δ): step 0 is the first bad step
    (a NaN η_s would too: every step's Q⊥ row multiplies all η_s)."""
    _, f, nb = case
    with pytest.raises(DivergenceError, match=r"diverged at step 0: .*\(dmft.solve_fn\)"):
        f(dataclasses.replace(nb, noise=np.asarray(-1.0)))


def test_input_validation(case):
    pr, f, nb = case
    with pytest.raises(DMFTInputError, match="`samples` must be a multiple of `replicas`=4"):
        dmft.solve_fn(pr, 4001, replicas=4)
    with pytest.raises(DMFTInputError, match="`dtype` must be one of"):
        dmft.numbers(pr, "int8")
    other = dmft.numbers(small_problem(activation="tanh"))
    with pytest.raises(DMFTInputError, match="`numbers.activation` must be 'erf'"):
        f(other)
    with pytest.raises(DMFTInputError, match=r"`numbers.lr` must have shape \(4,\)"):
        f(dataclasses.replace(nb, lr=np.zeros(3)))
    with pytest.raises(DMFTInputError, match="must be a dmft.model.Numbers"):
        f({"lr": nb.lr})


def test_kink_width_is_for_relu_only():
    with pytest.raises(DMFTInputError, match="`kink_width` applies to a non-smooth activation"):
        dmft.solve_fn(small_problem("erf"), SAMPLES, replicas=REPLICAS, kink_width=0.1)
    with pytest.raises(DMFTInputError, match="`kink_width` must be"):
        dmft.solve_fn(small_problem("relu"), SAMPLES, replicas=REPLICAS, kink_width=-1.0)


@pytest.mark.slow
def test_nesterov_values_and_momentum_gradient():
    """With Nesterov momentum, solve_fn equals dmft.solve (the iterates' order parameters), and
    the gradient with respect to β_1 equals central differences (float64, step 1e-5: the
    objective is smooth for erf, so the FD error is O(1e-10)); the tolerance 1e-5 relative."""
    pr = dmft.make_problem("he3", p=1, activation="erf", alpha=2.0, lr=[0.5, 0.8, 0.3],
                           steps=3, schedule="repeat:2", m0=0.1, momentum=[0.0, 0.5, 0.3],
                           nesterov=True)
    f = dmft.solve_fn(pr, SAMPLES, seed=SEED, replicas=REPLICAS)
    nb = dmft.numbers(pr)
    out = f(nb)
    tr = dmft.solve(pr, SAMPLES, seed=SEED, replicas=REPLICAS, progress=False)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_allclose(out[name], getattr(tr, name).value, rtol=1e-12, atol=1e-14)
    obj = objective(f)
    g = jax.grad(obj)(nb).momentum
    fd = _fd(obj, nb, "momentum", 1, 1e-5)
    assert abs(float(g[1]) - fd) <= 1e-5 * abs(fd) + 1e-10, (float(g[1]), fd)
    assert abs(fd) > 1e-3  # β_1 matters
    assert float(g[0]) == 0.0  # β_0 has no effect (velocity 0 at t = 0)
