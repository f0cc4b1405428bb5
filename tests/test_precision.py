"""Precision of the GPU path, checked on the CPU (issue #10).

1. Every matrix product of the float32 solver sweep and of the simulator carries the HIGHEST
   precision in the traced program, even when the user's global default is bfloat16 (GPUs
   otherwise run float32 products on TF32-class units, which broke float32 solves).
2. float32 solves keep their kernels in float64 (mixed precision) and hold at long horizons.
"""

import contextlib

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr

from dmft.problem import STREAM_SIM, make_problem, stream_key
from dmft.simulate import _exact_test_error, _init_seed, _run_seed_batch
from dmft.solver import _solve, _step, _structure

HIGHEST = jax.lax.Precision.HIGHEST


@contextlib.contextmanager
def user_precision(value):
    """The user's global ``jax_default_matmul_precision`` set to ``value``, restored after."""
    old = jax.config.jax_default_matmul_precision
    jax.config.update("jax_default_matmul_precision", value)
    try:
        yield
    finally:
        jax.config.update("jax_default_matmul_precision", old)


def _sub_jaxprs(value):
    if isinstance(value, ClosedJaxpr):
        yield value.jaxpr
    elif isinstance(value, Jaxpr):
        yield value
    elif isinstance(value, (tuple, list)):
        for v in value:
            yield from _sub_jaxprs(v)


def dot_precisions(jaxpr):
    """The ``precision`` of every dot_general in ``jaxpr`` and, recursively, in its sub-jaxprs
    (pjit, while, scan, cond, custom_jvp/vjp, ...)."""
    out = []
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "dot_general":
            out.append((eqn.params["precision"], str(eqn.source_info.name_stack)))
        for v in eqn.params.values():
            for sub in _sub_jaxprs(v):
                out.extend(dot_precisions(sub))
    return out


def assert_all_highest(closed):
    dots = dot_precisions(closed.jaxpr)
    assert dots, "no dot_general found: the walk is broken"
    bad = [(p, where) for p, where in dots if p != (HIGHEST, HIGHEST)]
    assert not bad, f"{len(bad)} of {len(dots)} products not at HIGHEST precision: {bad[:5]}"
    return len(dots)


@pytest.mark.parametrize("schedule, response", [("reuse", "stein"), ("fresh", "pathwise"),
                                                ("repeat:2", "stein")])
def test_float32_sweep_traces_every_product_at_highest(schedule, response):
    pr = make_problem("tanh_he3", p=2, activation="erf", lr=0.2, steps=3, schedule=schedule)
    with user_precision("bfloat16"):
        st = _solve.validate(pr, 800, 0, 2, 100, response, "float32")
        keys = _solve.replica_keys(0, 2)
        closed = eqx.filter_make_jaxpr(_step.run_sweep)(
            st, _structure.numeric_problem(pr, st.dtype), keys, diffrax.NoProgressMeter())[0]
        n = assert_all_highest(closed)
        m = jnp.zeros((3, 2, 2), jnp.float32)
        q = jnp.tile(jnp.eye(2, dtype=jnp.float32), (3, 1, 1))
        a = jnp.ones((3, 2), jnp.float32)
        closed_te = jax.make_jaxpr(_solve._test_errors)(
            _structure.numeric_problem(pr, "float32"), m, q, a)
        n_te = dot_precisions(closed_te.jaxpr)
    assert n > 10
    assert all(p == (HIGHEST, HIGHEST) for p, _ in n_te)


def test_float32_simulator_traces_every_product_at_highest():
    pr = make_problem("tanh_he3", p=2, activation="relu", lr=0.2, steps=3, alpha=2.0,
                      lr_a=0.1)
    d = 40
    n = int(round(pr.alpha * d))
    with user_precision("bfloat16"):
        root = stream_key(0, STREAM_SIM)
        ids = jnp.arange(2, dtype=jnp.int32)
        for sample_test in (False, True):
            closed = eqx.filter_make_jaxpr(_run_seed_batch)(
                pr, root, ids, d, n, "float32", sample_test, 50)[0]
            assert assert_all_highest(closed) >= 6
        closed = eqx.filter_make_jaxpr(_init_seed)(pr, d, jax.random.fold_in(root, 0),
                                                   "float32")[0]
        assert_all_highest(closed)
        m = jnp.zeros((3, 2, 2), jnp.float32)
        q = jnp.tile(jnp.eye(2, dtype=jnp.float32), (3, 1, 1))
        a = jnp.ones((3, 2), jnp.float32)
        closed = eqx.filter_make_jaxpr(_exact_test_error)(pr, m, q, a)[0]
        assert all(p == (HIGHEST, HIGHEST) for p, _ in dot_precisions(closed.jaxpr))


def test_user_precision_is_restored_and_untouched():
    """The library sets precision locally: the user's global setting is what it was."""
    with user_precision("bfloat16"):
        pr = make_problem("tanh_he3", p=2, activation="relu", lr=0.2, steps=2)
        st = _solve.validate(pr, 800, 0, 2, None, "stein", "float32")
        eqx.filter_make_jaxpr(_step.run_sweep)(
            st, _structure.numeric_problem(pr, st.dtype), _solve.replica_keys(0, 2),
            diffrax.NoProgressMeter())
        assert jax.config.jax_default_matmul_precision == "bfloat16"
    assert jax.config.jax_default_matmul_precision != "bfloat16"


def test_float32_solve_keeps_kernels_in_float64():
    """Mixed precision: histories float32, kernels/factor/Gram float64 (x64 on in the tests)."""
    pr = make_problem("tanh_he3", p=2, activation="relu", lr=0.2, steps=2)
    st = _solve.validate(pr, 800, 0, 2, None, "stein", "float32")
    assert st.dtype == jnp.float32 and st.kdtype == jnp.float64
    shapes = eqx.filter_eval_shape(
        lambda: jax.vmap(lambda k: _step.init_state(
            st, _structure.numeric_problem(pr, st.dtype),
            _step.draw_replica(st, k)))(_solve.replica_keys(0, 2)))
    assert shapes.z.dtype == shapes.g.dtype == shapes.y.dtype == jnp.float32
    for name in ("L", "Linv", "Qp", "C", "Gamma", "R", "m", "LG", "LGinv", "beta", "cfull"):
        assert getattr(shapes, name).dtype == jnp.float64, name
    assert np.dtype(st.kdtype).itemsize == 8
