"""The model: batch schedules as objects, and ``Problem.numbers()``, the one traced pytree."""

from __future__ import annotations

import jax
import numpy as np
import pytest

from dmft import DMFTInputError
from dmft.model import Schedule, make_problem


@pytest.mark.parametrize(
    "spec, text, batches, selection, fraction",
    [
        ("reuse", "reuse", [0, 0, 0, 0, 0], "none", 1.0),
        ("fresh", "fresh", [0, 1, 2, 3, 4], "none", 1.0),
        ("repeat:2", "repeat:2", [0, 0, 1, 1, 2], "none", 1.0),
        ([3, 3, 1, 0], "list:3,3,1,0", [0, 0, 1, 2, 2], "none", 1.0),
        ("sgd:0.25", "sgd:0.25", [0, 0, 0, 0, 0], "sgd", 0.25),
        ("sgd:1.0", "sgd:1", [0, 0, 0, 0, 0], "sgd", 1.0),
        ("epochs:4", "epochs:4", [0, 0, 0, 0, 0], "epochs", 0.25),
    ],
)
def test_schedule_parse(spec, text, batches, selection, fraction):
    sc = Schedule.parse(spec, 4)
    assert sc.text == text
    assert sc.batches.tolist() == batches
    assert sc.selection == selection
    assert sc.fraction == fraction
    same = sc.same_batch
    b = np.asarray(batches)
    assert same.shape == (5, 5) and np.array_equal(same, b[:, None] == b[None, :])
    assert Schedule.parse(sc.text, 4) == sc  # the canonical text parses to the same object


@pytest.mark.parametrize("bad", ["sgd:0", "sgd:1.5", "sgd:nan", "epochs:0", "epochs:2.5",
                                 "repeat:0", "repeat:x", "list:0,1", "list:0,-1,0,0", "sgd",
                                 "epoch:2", "fresh:2", ""])
def test_schedule_refuses(bad):
    with pytest.raises(DMFTInputError, match="schedule"):
        Schedule.parse(bad, 4)


def test_unknown_selection_is_refused_not_guessed():
    sc = Schedule.parse("epochs:2", 4)
    assert sc.check_selection(sc.selection) == "epochs"
    with pytest.raises(ValueError, match="unknown mini-batch selection"):
        sc.check_selection("shuffle")


def test_numbers_are_the_traced_numbers():
    pr = make_problem("he3", p=2, lr=[0.1, 0.2, 0.3], steps=3, alpha=2.5, ridge=0.01,
                      noise=0.2, m0=0.05, lr_a=0.4, schedule="sgd:0.5")
    num = pr.numbers()
    np.testing.assert_array_equal(num.lr, [0.1, 0.2, 0.3, 0.0])  # padded: η_T is never used
    np.testing.assert_array_equal(num.lr_a, [0.4, 0.4, 0.4, 0.0])
    assert float(num.alpha) == 2.5 and float(num.noise) == 0.2 and float(num.ridge) == 0.01
    assert float(num.batch_fraction) == 0.5
    np.testing.assert_array_equal(num.m0, np.full((2, 1), 0.05))
    # structure is static: the schedule only in its structural part (b is traced)
    assert num.schedule == "sgd:1" and num.steps == 3 and num.p == 2 and num.k == 1
    np.testing.assert_array_equal(num.momentum, [0.0, 0.0, 0.0, 0.0])  # no momentum: zeros
    leaves, tree = jax.tree.flatten(num)
    assert len(leaves) == 11
    other = make_problem("he3", p=2, lr=0.7, steps=3, alpha=1.0, schedule="sgd:0.1").numbers()
    assert jax.tree.structure(other) == tree  # a new number: the same compiled program
    assert jax.tree.structure(make_problem("he3", p=2, steps=3).numbers()) != tree
    f32 = pr.numbers(np.float32)
    assert all(np.asarray(x).dtype == np.float32 for x in jax.tree.leaves(f32))


@pytest.mark.slow
def test_small_minibatch_warns():
    import dmft

    pr = make_problem("he3", steps=2, schedule="sgd:0.1")
    with pytest.warns(UserWarning, match=r"b x 1000 DMFT samples per replica = 100 per step"):
        dmft.solve(pr, 4000, replicas=4, progress=False)
    with pytest.warns(UserWarning, match=r"b x 300 training samples = 30 per step"):
        dmft.simulate(pr, d=100, seeds=2, progress=False)
    import warnings

    with warnings.catch_warnings():
        warnings.simplefilter("error")
        make_problem("he3", steps=2, schedule="sgd:1")  # b = 1: the full batch, no warning
        dmft.simulate(make_problem("he3", steps=2, schedule="sgd:1"), d=50, seeds=2,
                      progress=False)
