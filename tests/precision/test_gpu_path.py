"""Precision of the GPU path, checked on the CPU.

1. Every matrix product of the float32 solver sweep and of the simulator carries the HIGHEST
   precision in the traced program, even when the user's global default is bfloat16 (GPUs
   otherwise run float32 products on TF32-class units, which broke float32 solves).
2. float32 solves keep their kernels in float64 (mixed precision) and hold at long horizons.
3. memory_estimate predicts the device peak and the pre-flight refuses what will not fit.
"""

import contextlib
import math
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.extend.core import ClosedJaxpr, Jaxpr

from dmft._rng import STREAM_SIM, stream_key
from dmft.model import make_problem
from dmft.observables._test_error import _test_error_map
from dmft.simulator._draws import init_seed
from dmft.simulator._seeds import run_seed_batch
from dmft.solver import _grid, _memory, _solve, _state, _step, _structure

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


@pytest.mark.parametrize("schedule, response", [("reuse", "stein"), ("repeat:2", "pathwise")])
def test_float32_sweep_traces_every_product_at_highest(schedule, response):
    """... and the library sets the precision locally: the user's setting is left as it was."""
    pr = make_problem("tanh_he3", p=2, activation="erf", lr=0.2, steps=3, schedule=schedule)
    with user_precision("bfloat16"):
        st = _solve.validate(pr, 800, 0, 2, 100, response, "float32")
        keys = _solve.replica_keys(0, 2)
        closed = eqx.filter_make_jaxpr(_step.run_sweep)(
            st, pr.numbers(st.kdtype), keys, diffrax.NoProgressMeter())[0]
        n = assert_all_highest(closed)
        m = jnp.zeros((3, 2, 2), jnp.float32)
        q = jnp.tile(jnp.eye(2, dtype=jnp.float32), (3, 1, 1))
        a = jnp.ones((3, 2), jnp.float32)
        closed_te = eqx.filter_make_jaxpr(_test_error_map)(
            pr.numbers(st.kdtype), m, q, a, "error")[0]
        n_te = dot_precisions(closed_te.jaxpr)
        assert jax.config.jax_default_matmul_precision == "bfloat16"
    assert jax.config.jax_default_matmul_precision != "bfloat16"
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
            closed = eqx.filter_make_jaxpr(run_seed_batch)(
                pr.numbers(), root, ids, d, n, "float32", sample_test, 50)[0]
            assert assert_all_highest(closed) >= 6
        closed = eqx.filter_make_jaxpr(init_seed)(pr.numbers(), d, jax.random.fold_in(root, 0),
                                                  n, "float32")[0]
        assert_all_highest(closed)
        m = jnp.zeros((3, 2, 2), jnp.float32)
        q = jnp.tile(jnp.eye(2, dtype=jnp.float32), (3, 1, 1))
        a = jnp.ones((3, 2), jnp.float32)
        closed = eqx.filter_make_jaxpr(_test_error_map)(pr.numbers(), m, q, a, "error")[0]
        assert all(p == (HIGHEST, HIGHEST) for p, _ in dot_precisions(closed.jaxpr))


def test_float32_solve_keeps_kernels_in_float64():
    """Mixed precision: histories float32, kernels/factor/Gram float64 (x64 on in the tests)."""
    pr = make_problem("tanh_he3", p=2, activation="relu", lr=0.2, steps=2)
    st = _solve.validate(pr, 800, 0, 2, None, "stein", "float32")
    assert st.dtype == jnp.float32 and st.kdtype == jnp.float64
    shapes = eqx.filter_eval_shape(
        lambda: jax.vmap(lambda k: _state.init_state(
            st, pr.numbers(st.kdtype),
            _state.draw_replica(st, k)))(_solve.replica_keys(0, 2)))
    assert shapes.z.dtype == shapes.g.dtype == shapes.y.dtype == jnp.float32
    for name in ("L", "Linv", "Qp", "C", "Gamma", "R", "m", "G", "LGinv", "beta", "cfull"):
        assert getattr(shapes, name).dtype == jnp.float64, name
    assert np.dtype(st.kdtype).itemsize == 8


# ------------------------------------------------------------------------------------------
# 2. float32 at long horizons: the cause (the causal factor in float32) and the fix
# ------------------------------------------------------------------------------------------


def _factor_rel_schur(Q, p, dtype):
    """Relative Schur complements of the causal factor built row by row in ``dtype``."""
    from dmft.solver import append_factor_row

    T1 = Q.shape[0]
    Q = jnp.asarray(Q, dtype)

    def body(carry, t):
        f, _, _, rel = append_factor_row(carry, Q[t], t, p)
        return f, rel

    eye = jnp.eye(T1 * p, dtype=dtype)
    return np.asarray(jax.lax.scan(body, (eye, eye), jnp.arange(T1))[1], np.float64)


def test_causal_factor_needs_float64_at_long_horizons():
    """The cause of the float32 long-horizon divergence. Q⊥ of a DMFT run is nearly constant
    along the diagonal with small innovations (relative Schur complement ~1e-5 after a few
    dozen steps); the factor forms them as D − L(t,<t) L(t,<t)ᵀ through L⁻¹, whose norm grows
    like 1/√innovation: float32 loses them (negative, clipped, then L⁻¹ overflows), float64
    keeps them. A random-walk kernel with exact innovations Z_u Z_uᵀ ~ 1e-5 shows it."""
    rng = np.random.default_rng(0)
    p, T1 = 2, 60
    Z = rng.standard_normal((T1, p, p))
    Z[1:] *= math.sqrt(1e-5)
    inc = np.einsum("uab,ucb->uac", Z, Z)
    cum = np.cumsum(inc, axis=0)
    t_idx = np.minimum.outer(np.arange(T1), np.arange(T1))
    Q = cum[t_idx]  # Q(t, s) = Σ_{u <= min(t, s)} Z_u Z_uᵀ
    exact = np.array([np.linalg.eigvalsh(inc[t])[0] / (np.trace(cum[t]) / p)
                      for t in range(T1)])
    err64 = np.abs(_factor_rel_schur(Q, p, jnp.float64) / exact - 1)
    err32 = np.abs(_factor_rel_schur(Q, p, jnp.float32) / exact - 1)
    assert np.max(err64) < 1e-2
    assert not np.all(err32 < 0.5)  # float32 loses the innovations (or produces NaN)


def test_float32_warns_and_names_remedy_without_float64_kernels(monkeypatch):
    """Without float64 kernels (x64 off; simulated here), a float32 solve warns when Q⊥'s
    relative Schur complement falls below what float32 resolves, and a divergence names the
    step and the remedy dtype='float64'."""
    from dmft import DivergenceError

    monkeypatch.setattr(_structure, "kernel_dtype", lambda d: jnp.dtype(d))
    monkeypatch.setattr(_solve, "kernel_dtype", lambda d: jnp.dtype(d))
    monkeypatch.setattr(_solve, "FLOAT32_SCHUR_TRUST", 0.5)
    pr = make_problem("tanh_he3", p=2, activation="relu", lr=0.2, steps=4)
    with pytest.warns(RuntimeWarning, match=r"float32 kernels.*at step \d.*dtype='float64'"):
        tr = _solve.solve(pr, 2000, seed=0, replicas=2, dtype="float32", progress=False)
    assert tr.status == "ok"
    big = make_problem("tanh_he3", p=2, activation="relu", lr=1e4, steps=4)  # no recompile
    with pytest.raises(DivergenceError, match=r"step \d.*float32.*dtype='float64'"):
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            _solve.solve(big, 2000, seed=0, replicas=2, dtype="float32", progress=False)


def _float32_vs_float64(T, p, samples, replicas):
    """max over t >= 1 of |float32 − float64| / SE(float64) for m, Q, e_g and the train loss,
    same seed (same normals), and the float32 solve."""
    pr = make_problem("tanh_he3", p=p, activation="relu", alpha=3.0, lr=0.2, steps=T)
    kw = dict(samples=samples, seed=1, replicas=replicas, progress=False)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # noisy Γ at small N
        a = _solve.solve(pr, dtype="float64", **kw)
        b = _solve.solve(pr, dtype="float32", **kw)
    z = {}
    for name in ("m", "Q", "test_error", "train_loss"):
        d = np.abs(np.asarray(getattr(b, name).value, np.float64)
                   - np.asarray(getattr(a, name).value))
        se = np.asarray(getattr(a, name).error)[1:]
        assert np.all(se > 0), name
        z[name] = float(np.max(d[1:] / se))
    return z, b


@pytest.mark.slow
def test_float32_matches_float64_at_long_horizon():
    """T = 100, p = 1: same seed → same normals; float32 (mixed precision) − float64 stays far
    below one Monte Carlo standard error (measured: max |Δ|/SE < 1e-3)."""
    z, b = _float32_vs_float64(100, 1, 2000, 4)
    assert b.status == "ok" and len(b.step) == 101
    assert max(z.values()) < 0.1, z


@pytest.mark.slow
def test_float32_long_run_case_runs_to_the_end():
    """The long-run case (T, N, p) = (200, 28000, 8), 4 replicas, seed 1: all-float32 diverged
    at step 28; mixed precision runs to the end within the Monte Carlo errors (measured max
    |Δ|/SE: m 0.28, Q 0.82, e_g 0.23, train loss 2.3, whose replica SE is small). ~15 min."""
    z, b = _float32_vs_float64(200, 8, 28000, 4)
    assert b.status == "ok" and len(b.step) == 201
    assert max(z.values()) < 4.0, z


@pytest.mark.slow
def test_float32_t100_p4_within_errors():
    """(T, N, p) = (100, 16000, 4), 4 replicas: all-float32 diverged at step 60 (measured max
    |Δ|/SE with mixed precision: m 0.14, Q 0.09, e_g 0.05, train loss 0.20). ~2 min."""
    z, b = _float32_vs_float64(100, 4, 16000, 4)
    assert b.status == "ok"
    assert max(z.values()) < 1.0, z


# ------------------------------------------------------------------------------------------
# 3. memory: float32 mixed precision and the device (GPU) peak
# ------------------------------------------------------------------------------------------


def test_memory_estimate_float32_is_the_resident_state():
    from dmft.solver import memory_estimate

    pr = make_problem("tanh_he3", activation="erf", steps=3)
    samples, replicas = 4000, 4
    st = _solve.validate(pr, samples, 0, replicas, None, "stein", "float32")
    keys = _solve.replica_keys(0, replicas)
    shapes = eqx.filter_eval_shape(lambda: jax.vmap(lambda k: _state.init_state(
        st, pr.numbers(st.kdtype), _state.draw_replica(st, k)))(keys))
    actual = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(shapes))
    est = memory_estimate(pr, samples, replicas=replicas, dtype="float32")
    assert est["state"] == actual
    est64 = memory_estimate(pr, samples, replicas=replicas, dtype="float64")
    assert est["state"] < est64["state"]


def test_memory_estimate_gpu_calibration():
    """The H200 measurement: (50, 1e7, 2) float64 peaked at 31.2 GiB on the device. The GPU
    model must cover it, and the pre-flight limit keeps a margin above it."""
    from dmft.solver import memory_estimate

    pr = make_problem("tanh_he3", p=2, activation="relu", second_layer="alternating",
                      alpha=3.0, lr=0.2, steps=50)
    measured = 31.2 * 2**30
    gpu = memory_estimate(pr, 10**7, platform="gpu")
    cpu = memory_estimate(pr, 10**7, platform="cpu")
    assert measured <= gpu["peak"] <= 1.05 * measured
    assert gpu["device_limit"] >= 1.08 * measured
    assert cpu["peak"] < measured  # the CPU model alone under-predicted the device
    assert cpu["device_limit"] == cpu["state"]


def test_preflight_refuses_what_does_not_fit_on_the_device(monkeypatch):
    from dmft import DMFTInputError
    from dmft.solver import memory_estimate

    pr = make_problem("tanh_he3", steps=3)
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    est = memory_estimate(pr, 4000)
    assert est["device_limit"] > est["peak"] > est["state"]
    monkeypatch.setattr(_memory, "free_memory_bytes", lambda: (est["device_limit"] - 1, "gpu:0"))
    with pytest.raises(DMFTInputError, match=r"too large for this device.*samples=4000.*gpu:0"):
        _solve.solve(pr, samples=4000, progress=False)


# ------------------------------------------------------------------------------------------
# 5. benchmarks/gpu.py runs unchanged on a CPU with --quick
# ------------------------------------------------------------------------------------------


def _gpu_script():
    import importlib.util
    import os

    path = os.path.join(os.path.dirname(__file__), os.pardir, os.pardir, "benchmarks", "gpu.py")
    spec = importlib.util.spec_from_file_location("bench_gpu", path)
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_gpu_benchmark_quick_smoke(capsys):
    """One DMFT row of ``benchmarks/gpu.py --quick`` (the full --quick is the slow test)."""
    assert _gpu_script().main(["--quick", "--rows", "1", "--no-sim", "--no-baseline",
                               "--no-breakdown"]) == 0
    out = capsys.readouterr().out
    row = [ln for ln in out.splitlines() if ln.startswith("dmft (7, 2e4, 2)")]
    assert len(row) == 1 and "float64" in row[0] and "exit" not in row[0], out
    cols = row[0].split()
    assert float(cols[5]) > 0 and float(cols[-3]) > 0  # cold time, floor


@pytest.mark.slow
def test_gpu_benchmark_quick_full(capsys):
    assert _gpu_script().main(["--quick", "--budget", "1200"]) == 0
    out = capsys.readouterr().out
    assert "skipped" not in out and "exit" not in out and "timed out" not in out, out
    assert "baseline / dmft warm" in out and "XLA compile" in out


# ---- the GPU compile of the random draws (checked by lowering for CUDA on the CPU) ----


def _sweep_cuda_text(schedule="reuse"):
    """StableHLO of the solver's sweep lowered for a CUDA device (no GPU needed)."""
    pr = make_problem("tanh_he3", p=2, activation="relu", alpha=3.0, lr=0.2, steps=4,
                      schedule=schedule)
    st = _solve.validate(pr, 4000, 0, 2, None, "stein", "float64")
    num = pr.numbers(st.kdtype)
    dyn, static = eqx.partition(num, eqx.is_array)
    meter = diffrax.NoProgressMeter()

    def fn(dyn, keys):
        return _step._sweep_one(st, eqx.combine(dyn, static), keys, meter)

    lowered = jax.jit(fn).trace(dyn, _solve.replica_keys(0, 2)).lower(
        lowering_platforms=("cuda",))
    return lowered.as_text()


def test_gpu_lowering_uses_the_threefry_kernel():
    """Under ``gpu_rng_kernel`` (what solve, sweep and simulate call their compiled programs
    in), the CUDA program calls JAX's threefry kernel instead of carrying the unrolled hash
    (20 rounds of add/rotate/xor per call site) for XLA to compile; without it, it does not.
    The bits are the same algorithm's, so nothing else changes (the CPU lowering is
    untouched: every other test runs under the same context)."""
    from dmft._devices import gpu_rng_kernel

    plain = _sweep_cuda_text("sgd:0.5")
    with gpu_rng_kernel():
        kernel = _sweep_cuda_text("sgd:0.5")
    assert "cu_threefry2x32" not in plain and "cu_threefry2x32" in kernel
    # the unrolled hash is a private function of the module (shift-rotate by 13, 15, 26, ...)
    assert plain.count("stablehlo.shift_left") > 3 * max(kernel.count("stablehlo.shift_left"), 1)
    assert len(kernel) < 0.85 * len(plain)


@pytest.mark.parametrize("entry", ["solve", "sweep", "simulate"])
def test_entry_points_compile_under_the_gpu_rng_kernel(entry, monkeypatch):
    """The compiled programs of dmft.solve, dmft.sweep and dmft.simulate are called (hence
    lowered) with the threefry kernel lowering on; the user's setting is restored after."""
    import importlib

    from jax._src import config as jax_config

    import dmft
    from dmft import _sweep

    seeds = importlib.import_module("dmft.simulator._seeds")

    seen = []

    def spy(fn):
        def wrapped(*a, **k):
            seen.append(jax_config.threefry_gpu_kernel_lowering.value)
            return fn(*a, **k)
        return wrapped

    if entry == "solve":
        monkeypatch.setattr(_solve, "run_sweep", spy(_solve.run_sweep))
    elif entry == "sweep":
        monkeypatch.setattr(_grid, "run_grid", spy(_grid.run_grid))
    else:
        monkeypatch.setattr(seeds, "run_seed_batch", spy(seeds.run_seed_batch))
    pr = make_problem("tanh_he3", p=2, activation="relu", alpha=3.0, lr=0.2, steps=2)
    if entry == "solve":
        dmft.solve(pr, 1000, replicas=2, progress=False)
    elif entry == "sweep":
        _sweep.sweep(pr, over={"lr": [0.1, 0.2]}, samples=1000, replicas=2, progress=False)
    else:
        dmft.simulate(pr, 200, seeds=2, progress=False)
    assert seen and all(seen)
    assert not jax.config.jax_threefry_gpu_kernel_lowering
