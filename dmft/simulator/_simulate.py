"""Direct finite-d simulation of gradient descent on the two-layer network: :func:`simulate`.

This is the *arbiter* of the DMFT: it shares only the problem definition with the solver (the
network, the loss and its gradient, the target, the initial condition, the test-error quadrature
and the key streams) and none of the solver's machinery.

For each seed it draws a teacher W* (k×d, orthogonal rows of norm √d), a student W_0 = m_0 W* + W⊥_0
with W⊥_0 orthogonal to the span of W* and W⊥_0 W⊥_0ᵀ/d = Q⊥_0 exactly, and n = round(α d) samples
x ~ N(0, I_d) with labels y = g*(W* x/√d) + √Δ ξ (:mod:`._draws`, which also states the keys),
runs T GD steps on the sum loss and records the observables of every step (:mod:`._train`).
Seeds run in batches, spread over the devices (:mod:`._seeds`); a Python loop with a tqdm bar
runs the batches. Results do not depend on ``seed_batch`` or ``devices`` (up to the rounding of
batched matmuls, ~1e-15 relative), and the same ``seed`` (with the same ``seed_batch``, which
by default depends only on the sizes and the machine's physical memory) gives bitwise the same
result on one machine.

Numbers: the simulation reads :meth:`Problem.numbers() <dmft.model.Problem.numbers>`, whose
arrays are traced, so a new η, λ, Δ, m_0, Q⊥_0, a, η_a or mini-batch fraction b does not
recompile (α does, through the number of samples n, a shape).

Precision: ``dtype`` is the working dtype of the data, the weights and the observables (m and Q
come straight from the W W*ᵀ and W Wᵀ matmuls). Every matrix product runs at full precision
(``precision=HIGHEST``, and the jitted functions trace under
``jax.default_matmul_precision("highest")``), whatever the user's global setting: GPUs otherwise
use TF32-class float32 products. ``float64`` needs JAX x64 mode on. The normals are drawn in the
working dtype, so float32 and float64 runs of the same seed see *different* data and agree only
statistically. On the *same* data (drawn in float64, then float32 arithmetic), the case d = 2000,
α = 3, p = 4, k = 2 (tanh_he3, relu, η = 0.2), T = 10, 4 seeds differs from float64 by at most
5.3e-7 (in Q), 1e-4 of the seed-to-seed standard error or less.

Test error: in both modes it *includes* the label noise Δ/2. ``"exact"`` evaluates
:func:`dmft.observables.test_error` at the simulation's own (m_t, Q_t); this is exactly the
expected loss on a fresh sample given W_t (since W*W*ᵀ/d = I), up to quadrature error.
``"sample"`` is the mean loss on ``n_test`` fresh labelled samples (with label noise) drawn once
per seed and reused at every step.

Divergence: after each seed batch the observables are checked; at the first step t where any of
them is non-finite or |Q| > ``dmft._precision.overflow_limit`` (1e100 in float64) in any seed
simulated so far, a partial :class:`Trajectory` of steps 0..t−1 (seeds simulated so far) is
built and :class:`DivergenceError` is raised with it.
"""

from __future__ import annotations

import time

import numpy as np
from tqdm.auto import tqdm

from .._devices import run_info
from .._diagnose import step0_causes
from .._errors import DivergenceError, DMFTInputError
from .._precision import overflow_limit
from .._result import Estimate, Trajectory, estimate_from_replicas, mark_blowup
from .._rng import KEY_SCHEME
from .._validate import check_choice, check_dtype, check_int, check_x64
from ..model import Problem, check_problem, warn_small_minibatch
from ..observables import OBSERVABLES, OPTIONAL, test_error_map
from ._seeds import SeedBatches, plan_seed_batches

__all__ = ["simulate"]

_MAX_SAMPLES = 1e10  # n = round(alpha·d) above this is refused before any compute
_TEST_ERROR_MODES = ("exact", "sample")


def _validate(problem, d, seeds, seed, seed_batch, test_error, n_test, dtype):
    check_problem(problem)
    d = check_int("d", d, low=1)
    pk = problem.p + problem.k
    if d < pk:
        raise DMFTInputError(
            f"`d` must be an integer in [p + k, inf) = [{pk}, inf) so that W⊥_0 can be orthogonal "
            f"to W*; got d={d} (p={problem.p}, k={problem.k})"
        )
    seeds = check_int("seeds", seeds, low=1)
    n_float = problem.alpha * d
    if not n_float <= _MAX_SAMPLES:  # also catches alpha·d = inf
        raise DMFTInputError(
            f"`alpha`·`d` must give at most {_MAX_SAMPLES:.0e} samples (n = round(alpha·d)); "
            f"got alpha={problem.alpha:g}, d={d} → n={n_float:.3g}"
        )
    n = int(round(n_float))
    if n < 1:
        raise DMFTInputError(
            f"`alpha`·`d` must give at least 1 sample (n = round(alpha·d) in [1, inf)); "
            f"got alpha={problem.alpha}, d={d} → n={n}"
        )
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    if seed_batch is not None:
        seed_batch = check_int("seed_batch", seed_batch, low=1)
    check_choice("test_error", test_error, set(_TEST_ERROR_MODES))
    n_test = check_int("n_test", n_test, low=1)
    dtype_name = check_dtype(dtype)
    check_x64(dtype_name)
    warn_small_minibatch(problem, n, "training samples", stacklevel=4)
    return d, seeds, n, seed, seed_batch, n_test, dtype_name


def _first_bad_step(per_seed: dict) -> tuple[int, str] | None:
    """The first step (over all seeds) where an observable is non-finite or |Q| overflows."""
    first, what = None, None
    for name in OBSERVABLES:
        x = per_seed[name]
        bad = ~np.isfinite(x)
        if name == "Q":
            bad |= np.abs(x.astype(np.float64)) > overflow_limit(x.dtype)  # NaN compares False
        bad_t = bad.reshape(x.shape[0], x.shape[1], -1).any(axis=(0, 2))  # over steps
        if bad_t.any():
            t = int(np.argmax(bad_t))
            if first is None or t < first:
                first, what = t, name
    return None if first is None else (first, what)


def _trajectory(problem, per_seed, settings, status="ok", first_bad_step=-1) -> Trajectory:
    if not problem.trains_second_layer:
        per_seed = {k: v for k, v in per_seed.items() if k != "a"}
    est = {k: estimate_from_replicas(v, axis=0) for k, v in per_seed.items()}
    n_steps = per_seed["m"].shape[1]
    return Trajectory(
        kind="simulation",
        problem=problem,
        step=np.arange(n_steps),
        m=Estimate(*est["m"]),
        Q=Estimate(*est["Q"]),
        test_error=Estimate(*est["test_error"]),
        train_loss=Estimate(*est["train_loss"]),
        a=Estimate(*est["a"]) if problem.trains_second_layer else None,
        per_seed=per_seed,
        settings=settings,
        status=status,
        first_bad_step=first_bad_step,
        test_loss=Estimate(*est["test_loss"]) if "test_loss" in est else None,
    )


def _batch_observables(numbers, out, sample_test: bool) -> dict:
    """The per-seed observables of one seed batch as numpy arrays, with the exact test error
    (``test_error="exact"``) and the test loss evaluated at its (m_t, Q_t, a_t)."""
    m, q, train, test, a = out
    s, t1 = m.shape[:2]
    flat = (m.reshape((s * t1,) + m.shape[2:]), q.reshape((s * t1,) + q.shape[2:]),
            a.reshape((s * t1,) + a.shape[2:]))
    if not sample_test:
        test = test_error_map(numbers, *flat).reshape(s, t1)
    test_loss = test_error_map(numbers, *flat, what="loss").reshape(s, t1)
    obs = {"m": m, "Q": q, "test_error": test, "train_loss": train, "a": a,
           "test_loss": test_loss}
    return {k: np.asarray(v) for k, v in obs.items()}


def _raise_if_diverged(problem, chunks: dict, settings: dict, start: float) -> None:
    """Raise :class:`DivergenceError` with the partial trajectory if the latest seed batch has
    a non-finite or overflowing step (the batches before it were clean, else this raised)."""
    bad = _first_bad_step({k: v[-1] for k, v in chunks.items()})
    if bad is None:
        return
    t_bad, quantity = bad
    per_seed = {k: np.concatenate(v, axis=0) for k, v in chunks.items()}
    settings["wall_time_s"] = time.perf_counter() - start
    settings["seeds_done"] = per_seed["m"].shape[0]
    partial = _trajectory(problem, {k: v[:, :t_bad] for k, v in per_seed.items()}, settings,
                          status="diverged", first_bad_step=t_bad)
    causes = step0_causes(problem) if t_bad == 0 else None
    raise DivergenceError(t_bad, quantity, partial=partial, causes=causes)


def simulate(problem: Problem, d: int, seeds: int = 16, *, seed: int = 0,
             seed_batch: int | None = None, test_error: str = "exact", n_test: int = 10_000,
             dtype="float64", progress: bool | None = None, devices=None) -> Trajectory:
    """Simulate GD on the problem at finite dimension ``d`` over independent seeds.

    Args:
        problem: the :class:`~dmft.model.Problem` (student, target, α, η_t, λ, schedule, m_0,
            Q⊥_0); it is run for ``problem.steps`` GD steps.
        d: input dimension, an integer >= p + k; n = round(alpha·d) samples (>= 1).
        seeds: number of independent seeds (teacher, initialisation and data), >= 1.
        seed: the root seed (>= 0); the same seed gives bitwise the same result.
        seed_batch: seeds simulated at once (``vmap``); bounds memory only, the result does not
            depend on it. ``None``: as many as fit in 1/4 of the physical memory by the estimate
            2·itemsize·d·(n + n_test if sampled) + 128 MiB per seed (see :mod:`._seeds`).
        test_error: ``"exact"`` (quadrature at the simulation's (m_t, Q_t)) or ``"sample"`` (mean
            loss on ``n_test`` fresh samples drawn once per seed). Both include label noise Δ/2.
        n_test: test-set size for ``test_error="sample"``, >= 1.
        dtype: working dtype, ``"float64"`` (needs JAX x64) or ``"float32"``.
        progress: tqdm bar over seeds; ``None`` shows it only on a terminal.
        devices: ``None`` (default: every device of the default backend, every process's
            under ``jax.distributed``), an int n (the first n) or a list of devices. The seeds
            of a batch are spread over the devices (a ``seed_batch`` >= the device count is
            rounded up to a multiple of it; a last short batch also computes a few extra
            seeds, dropped); a smaller one splits the rows of each seed's data over devices
            (see :mod:`._seeds`). Results do not depend on it (as for ``seed_batch``, ~1e-15).
            One device runs the one-device code unchanged.

    Returns:
        A :class:`~dmft.Trajectory` of kind ``"simulation"`` over steps 0..T: mean over
        seeds with standard error std(ddof=1)/√seeds (NaN for one seed), ``per_seed`` arrays
        ``m`` (S, T+1, p, k), ``Q`` (S, T+1, p, p), ``test_error`` and ``train_loss`` (S, T+1),
        ``test_loss`` (S, T+1; the test loss at (m_t, Q_t), the test error itself for the
        square loss), ``a`` (S, T+1, p) when the second layer is trained, and ``settings``.
        The train loss at step t is (1/n) Σ_ν ℓ on the batch of step t (for
        "fresh" at t = T, the batch step T would use).

    Raises:
        DMFTInputError: invalid input (before any computation).
        DivergenceError: an observable became non-finite or |Q| > 1e100; ``.partial`` holds the
            trajectory of the steps before ``.step`` (seeds simulated so far).

    Warns:
        RuntimeWarning: the run blew up (``dmft._result.BLOWUP_RATIO``, docs/FORMAT.md); its
            ``status`` is then ``"blew_up"`` and ``first_bad_step`` the first such step.
    """
    d, seeds, n, seed, seed_batch, n_test, dtype = _validate(
        problem, d, seeds, seed, seed_batch, test_error, n_test, dtype
    )
    sample_test = test_error == "sample"
    plan = plan_seed_batches(problem.alpha, d, n, seeds, seed_batch, sample_test, n_test, dtype,
                             devices)
    settings = dict(d=d, n=n, seeds=seeds, seed=seed, seed_batch=plan.seed_batch,
                    test_error=test_error, n_test=n_test, dtype=dtype, key_scheme=KEY_SCHEME,
                    **run_info(plan.devices))
    if len(plan.devices) > 1:
        settings["row_shards"] = plan.row_shards

    start = time.perf_counter()
    numbers = problem.numbers()
    batches = SeedBatches(plan, numbers, seed, d, n, dtype, sample_test, n_test)
    chunks: dict[str, list[np.ndarray]] = {name: [] for name in (*OBSERVABLES, *OPTIONAL)}
    with tqdm(total=seeds, unit="seed", disable=None if progress is None else not progress) as bar:
        for lo in range(0, seeds, plan.seed_batch):
            hi = min(lo + plan.seed_batch, seeds)
            obs = _batch_observables(numbers, batches.run(lo, hi), sample_test)
            for name, values in obs.items():
                chunks[name].append(values)
            bar.update(hi - lo)
            _raise_if_diverged(problem, chunks, settings, start)
    settings["wall_time_s"] = time.perf_counter() - start
    per_seed = {k: np.concatenate(v, axis=0) for k, v in chunks.items()}
    return mark_blowup(_trajectory(problem, per_seed, settings), stacklevel=2)
