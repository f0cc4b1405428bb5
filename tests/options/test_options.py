"""One options object for the theory runs (solve, sweep, solve_flow, solve_online): validation,
sharing, ``throw=False``, and the grid bound of a sweep."""

from __future__ import annotations

import warnings

import numpy as np
import pytest

import dmft
from dmft import DivergenceError, DMFTInputError, Options, make_problem


@pytest.mark.parametrize("kwargs, words", [
    (dict(dtype="float16"), "`dtype`"),
    (dict(chunk_size=0), "`chunk_size`"),
    (dict(progress="yes"), "`progress`"),
    (dict(throw=1), "`throw`"),
])
def test_options_refuse_bad_values(kwargs, words):
    with pytest.raises(DMFTInputError, match=words):
        Options(**kwargs)


def test_options_or_keywords_not_both():
    pr = make_problem("he3", steps=2)
    with pytest.raises(DMFTInputError, match="either as keyword or in `options`"):
        dmft.solve(pr, 4000, replicas=4, dtype="float32", options=Options(progress=False))
    with pytest.raises(DMFTInputError, match="`options` must be a dmft.Options"):
        dmft.solve(pr, 4000, replicas=4, options={"progress": False})


def test_options_are_the_keywords():
    pr = make_problem("he3", steps=3, lr=0.7)
    opts = Options(chunk_size=500, progress=False)
    a = dmft.solve(pr, 4000, replicas=4, seed=1, options=opts)
    b = dmft.solve(pr, 4000, replicas=4, seed=1, chunk_size=500, progress=False)
    np.testing.assert_array_equal(a.m.value, b.m.value)
    assert a.settings["chunk_size"] == 500
    sw = dmft.sweep(pr, {"lr": [0.7]}, 4000, replicas=4, seed=1, options=opts)
    np.testing.assert_allclose(sw.m.value[0], a.m.value, rtol=1e-12, atol=1e-15)


DIVERGING = dict(target="he3", p=2, activation="quadratic", alpha=2.0, lr=50.0, steps=12)


def test_solve_throw_false_returns_the_partial_run():
    pr = make_problem(**DIVERGING)
    with pytest.raises(DivergenceError) as info:
        dmft.solve(pr, 2000, seed=0, progress=False)
    with pytest.warns(RuntimeWarning, match="diverged at step"):
        part = dmft.solve(pr, 2000, seed=0, progress=False, throw=False)
    assert part.status == "diverged" and part.first_bad_step == info.value.step
    np.testing.assert_array_equal(part.m.value, info.value.partial.m.value)


def test_online_throw_false_returns_the_partial_run():
    pr = make_problem("linear", p=1, activation="linear", second_layer=[1.0], lr=3.0,
                      noise=0.2, m0=0.3)
    kw = dict(n_out=31, samples=4000, replicas=4, rtol=1e-7, atol=1e-9, progress=False)
    with pytest.raises(DivergenceError):
        dmft.solve_online(pr, 10.0, **kw)
    with pytest.warns(RuntimeWarning, match="tau = "):
        part = dmft.solve_online(pr, 10.0, throw=False, **kw)
    assert part.status == "diverged" and 17 <= part.first_bad_step <= 20
    assert part.time.name == "tau" and len(part.step) == part.first_bad_step


def test_online_refuses_options_it_does_not_use():
    pr = make_problem("he3", steps=2)
    with pytest.raises(DMFTInputError, match="`chunk_size` does not apply to solve_online"):
        dmft.solve_online(pr, 1.0, options=Options(chunk_size=10))


def test_flow_throw_false_keeps_the_common_times():
    pr = make_problem("he3", p=2, activation="quadratic", alpha=2.0, steps=2)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        with pytest.raises(DivergenceError):
            dmft.solve_flow(pr, 12.0, 2000, dt=2.0, replicas=4, progress=False)
        flow = dmft.solve_flow(pr, 12.0, 2000, dt=2.0, replicas=4, progress=False, throw=False)
    assert flow.kind == "flow" and flow.status == "diverged"
    assert flow.time.name == "tau" and 0 < len(flow.step) <= 6
    assert np.all(np.isfinite(flow.m.value))


def test_sweep_grid_is_bounded_before_compute():
    pr = make_problem("he3", steps=2)
    with pytest.raises(DMFTInputError, match=r"grid of 1000000 points .* `max_points`=10000"):
        dmft.sweep(pr, {"lr": np.linspace(0.1, 1, 1000), "alpha": np.linspace(1, 2, 1000)})
    with pytest.raises(DMFTInputError, match=r"grid of 3 points"):
        dmft.sweep(pr, {"lr": [0.1, 0.2, 0.3]}, 4000, replicas=4, max_points=2)
