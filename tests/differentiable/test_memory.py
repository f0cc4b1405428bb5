"""memory_estimate(mode="reverse"): the checkpointed carries of solve_fn's backward pass,
compared with the bytes of the carried state that solve_fn's scan holds (from jax.eval_shape)."""

from __future__ import annotations

import dataclasses

import jax
import numpy as np
import pytest

import dmft
from dmft._errors import DMFTInputError
from dmft.solver._fn import CONSTANT_FIELDS
from dmft.solver._solve import replica_keys, validate
from dmft.solver._state import draw_replicas, init_state


@pytest.mark.parametrize("schedule,response,activation", [("repeat:2", "stein", "relu"),
                                                          ("reuse", "pathwise", "erf"),
                                                          ("fresh", "stein", "relu")])
def test_reverse_checkpoints_are_the_carried_state(schedule, response, activation):
    pr = dmft.make_problem("he3", p=2, activation=activation, steps=4, schedule=schedule)
    samples, replicas = 4000, 4
    fwd = dmft.memory_estimate(pr, samples, replicas=replicas, response=response,
                               platform="cpu")
    rev = dmft.memory_estimate(pr, samples, replicas=replicas, response=response,
                               platform="cpu", mode="reverse")
    st = validate(pr, samples, 0, replicas, None, response, "float64")
    nb = pr.numbers(st.kdtype)

    def state():
        draws = draw_replicas(st, replica_keys(0, replicas))
        return jax.vmap(lambda dr: init_state(st, nb, dr))(draws)

    shapes = jax.eval_shape(state)
    carried = sum(int(np.prod(x.shape)) * x.dtype.itemsize
                  for f in dataclasses.fields(shapes) if f.name not in CONSTANT_FIELDS
                  for x in jax.tree.leaves(getattr(shapes, f.name)))
    assert rev["carried"] == carried
    assert rev["checkpoints"] == st.T1 * carried  # one carry per step t = 0..T
    assert rev["state"] == fwd["state"]
    assert rev["peak"] == fwd["peak"] + rev["checkpoints"] + 2 * carried
    assert rev["device_limit"] == fwd["state"] + rev["checkpoints"]
    assert "checkpoints" not in fwd


def test_mode_is_checked():
    pr = dmft.make_problem("he3", steps=2)
    with pytest.raises(DMFTInputError, match="`mode` must be one of"):
        dmft.memory_estimate(pr, 4000, replicas=4, mode="backward")
