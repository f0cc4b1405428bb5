"""The public DMFT solve: validation, memory pre-flight, the compiled sweep, assembly.

Monte Carlo layout. ``samples`` effective samples are split into ``replicas`` independent groups
of ``samples // replicas``; each group runs the whole forward sweep on its own (replicas are
vmapped). Reported values are the mean over replicas and errors the standard error of that mean,
which propagates the Monte Carlo noise of the kernels through the dynamics honestly. Within a
replica, samples are processed whole (default) or in chunks of ``chunk_size`` by a ``lax.scan``
that only accumulates sums; chunks bound the per-step temporaries, O(chunk_size·p), not the
O(samples·T·p) histories (z and g), which are the only per-sample state.
"""

from __future__ import annotations

import contextlib
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from .._devices import gpu_rng_kernel, resolve_devices, run_info, to_host
from .._diagnose import step0_causes
from .._errors import DivergenceError, DMFTInputError
from .._options import Options, resolve_options
from .._precision import kernel_dtype
from .._result import Trajectory, estimate_from_replicas, kernel_diagonal, mark_blowup
from .._rng import STREAM_DMFT, stream_key
from .._validate import check_choice, check_int, check_x64
from ..model import Problem, check_problem, warn_small_minibatch
from ..observables import KERNELS, test_error_map
from ._factor import SCHUR_WARN_REL
from ._memory import check_memory
from ._response import RESPONSE_CLASSES, RESPONSES
from ._sharding import local_structure, mesh_shape, run_sweep_sharded
from ._step import progress_meter, run_sweep
from ._structure import Structure, make_structure


def validate(problem, samples, seed, replicas, chunk_size, response, dtype) -> Structure:
    """Check every argument of a solve (before any compute) and return its structure."""
    check_problem(problem)
    replicas = check_int("replicas", replicas, low=2, high=4096)
    samples = check_int("samples", samples, low=2 * replicas, high=10**10)
    if samples % replicas:
        raise DMFTInputError(
            f"`samples` must be a multiple of `replicas`={replicas}; got samples={samples}"
        )
    check_int("seed", seed, low=0, high=2**63 - 1)
    check_choice("response", response, set(RESPONSES))
    try:
        dtype_name = np.dtype(dtype).name
    except TypeError:
        raise DMFTInputError(
            f"`dtype` must be one of ['float32', 'float64']; got dtype={dtype!r}") from None
    check_choice("dtype", dtype_name, {"float32", "float64"})
    check_x64(dtype_name)
    n_real = samples // replicas
    chunk = n_real if chunk_size is None else min(check_int("chunk_size", chunk_size, low=1),
                                                  n_real)
    st = make_structure(problem, n_real, chunk, response, dtype_name)
    if n_real < 4 * st.n_regress:
        raise DMFTInputError(
            f"`samples` per replica (samples/replicas = {n_real}) must be at least "
            f"{4 * st.n_regress} = 4 x the {st.n_regress} regressors of the response estimator "
            f"(1 + batches (k + 1) + (T+1) p); got samples={samples}, replicas={replicas}"
        )
    if RESPONSE_CLASSES[response].smooth_only and not problem.act.smooth:
        warnings.warn(
            f"response={response!r} with the non-smooth activation {problem.activation!r}: the "
            "almost-everywhere Hessian misses the kink's Dirac mass and biases Γ; "
            "use response='stein'",
            UserWarning,
            stacklevel=3,
        )
    warn_small_minibatch(problem, n_real, "DMFT samples per replica", stacklevel=4)
    return st


def replica_keys(seed: int, replicas: int):
    root = stream_key(seed, STREAM_DMFT)
    return jax.vmap(lambda r: jax.random.fold_in(root, r))(jnp.arange(replicas))


def show_progress(progress) -> bool:
    return sys.stderr.isatty() if progress is None else bool(progress)


def solve(
    problem: Problem,
    samples: int = 200_000,
    *,
    seed: int = 0,
    replicas: int = 16,
    chunk_size: int | None = None,
    response: str = "stein",
    dtype="float64",
    progress: bool | None = None,
    keep_replicas: bool = False,
    devices=None,
    throw: bool = True,
    options: Options | None = None,
) -> Trajectory:
    """Solve the discrete-time DMFT forward in time.

    The problem's numbers (α, η_t, λ, Δ, m₀, Q⊥₀, a, η_a) are traced inputs of the compiled
    sweep: solving the same structure (target, activation, p, T, schedule, sizes, response,
    dtype) with other numbers does not recompile.

    Args:
        problem: the :class:`~dmft.problem.Problem`.
        samples: total number N of effective samples (split over ``replicas``).
        seed: user seed; the same seed gives bitwise the same result.
        replicas: independent groups used for the Monte Carlo error (>= 2).
        chunk_size: samples per chunk inside a replica; ``None`` (default, fastest) processes a
            whole replica at once. Chunks bound the per-step temporaries (O(chunk·p), and
            O(chunk·T²p²) for ``pathwise``), not the O(N·T·p) histories; results do not depend
            on it beyond rounding.
        response: ``"stein"`` (Gaussian integration by parts; exact for any activation) or
            ``"pathwise"`` (derivatives along the recursion; smooth activations only; memory
            O(N T² p²)).
        dtype: ``"float64"`` (needs JAX x64) or ``"float32"``.
        progress: progress bar over steps; ``None`` shows it only on a terminal.
        keep_replicas: also return the per-replica trajectories in ``per_seed`` (leading
            replica axis), e.g. for estimates that combine several solves replica by replica.
        devices: ``None`` (default: every device of the default backend, i.e. every process's
            under ``jax.distributed``), an int n (the first n) or a list of devices. Replicas
            are spread over the devices, and the samples of a replica too when the device
            count does not divide into ``replicas`` (see ``dmft/solver/_sharding.py``); the
            resident memory per device falls as 1/devices. One device runs the one-device
            sweep unchanged; other counts give the same result up to float summation order
            (~1e-13 in float64). With several devices each device of process 0 ticks its
            own progress bar (they advance together).
        throw: ``False`` returns a diverging run's partial trajectory (with a warning).
        options: dtype, chunk_size, devices, progress, throw as one :class:`dmft.Options`.

    Returns:
        A :class:`~dmft.result.Trajectory` of kind ``"dmft"`` with kernels and diagnostics.

    Raises:
        DMFTInputError: invalid arguments (before any computation).
        DivergenceError: a non-finite value appeared; ``.partial`` holds the steps before it.
    """
    opts = resolve_options(options, dtype=dtype, chunk_size=chunk_size, progress=progress,
                           devices=devices, throw=throw)
    chunk_size = opts.chunk_size
    st = validate(problem, samples, seed, replicas, chunk_size, response, opts.dtype)
    devs = resolve_devices(opts.devices)
    check_memory(problem, samples, replicas, chunk_size, response, st.dtype, devices=devs)
    keys = replica_keys(seed, replicas)
    t_start = time.perf_counter()
    meter = progress_meter(opts.show_progress and jax.process_index() == 0)
    n_run, state, outs = _run(st, devs, problem.numbers(st.kdtype), keys, meter, chunk_size,
                              replicas)
    n_run, state, outs = to_host((n_run, state, outs))  # waits for the sweep
    n_run = int(n_run)
    elapsed = time.perf_counter() - t_start
    settings = dict(samples=samples, replicas=replicas, seed=seed, chunk_size=chunk_size,
                    response=response, dtype=st.dtype_name, wall_time_s=elapsed,
                    **run_info(devs))
    try:
        return finish(problem, state, outs, n_run, settings, keep_replicas, stacklevel=4)
    except DivergenceError as exc:
        if opts.throw or exc.partial is None:
            raise
        warnings.warn(str(exc), RuntimeWarning, stacklevel=2)
        return exc.partial


def _run(st, devs, numbers, keys, meter, chunk_size, replicas):
    """The compiled sweep on one device, or sharded over several."""
    if len(devs) == 1:  # the one-device sweep: no mesh, no shard_map
        with contextlib.ExitStack() as ctx:
            if devs[0] != jax.devices()[0]:
                ctx.enter_context(jax.default_device(devs[0]))
            ctx.enter_context(gpu_rng_kernel())
            return run_sweep(st, numbers, keys, meter)
    st_local = local_structure(st, chunk_size, mesh_shape(replicas, len(devs))[1])
    with gpu_rng_kernel():
        return run_sweep_sharded(st_local, devs, numbers, keys, meter)


# With float32 kernels (float32 solve without JAX x64), a relative Schur complement of Q⊥
# below this (~1e3 float32 epsilons) is not resolved by the causal factor: all-float32 solves
# diverge a few steps after it falls to ~1e-5 (see ``_precision``).
FLOAT32_SCHUR_TRUST = 1e-4
FLOAT32_REMEDY = ("use dtype='float64' (with jax.config.update('jax_enable_x64', True)), or "
                  "turn x64 on to keep dtype='float32' histories with float64 kernels")


def finish(problem, state, outs, n_run, settings, keep_replicas, stacklevel=3) -> Trajectory:
    """Assemble the host arrays of one solve, warn, and raise on divergence."""
    first_bad = -1
    if n_run and not np.all(outs["finite"][n_run - 1]):
        first_bad = n_run - 1
    n_done = n_run if first_bad < 0 else first_bad  # steps whose outputs are all good
    traj = assemble(problem, state, outs, n_done, first_bad, settings, keep_replicas)
    rel = traj.diagnostics["min_schur_eig_rel"]
    f32_kernels = np.asarray(state["m"]).dtype == np.float32
    untrusted = np.nonzero(rel < FLOAT32_SCHUR_TRUST)[0] if f32_kernels else np.zeros(0, int)
    if first_bad >= 0 and f32_kernels:
        raise DivergenceError(
            first_bad,
            "DMFT kernels/overlaps computed in float32 (JAX x64 is off); the causal factor of "
            f"Q⊥ cannot resolve relative Schur complements below {FLOAT32_SCHUR_TRUST:g} in "
            "float32" + (f" (first below it at step {int(untrusted[0])})" if len(untrusted)
                         else "") + f"; {FLOAT32_REMEDY}",
            partial=traj)
    if len(untrusted):
        warnings.warn(
            f"float32 kernels (JAX x64 is off): the relative Schur complement of Q⊥ fell to "
            f"{float(np.min(rel)):.2e} at step {int(untrusted[0])}, below the "
            f"{FLOAT32_SCHUR_TRUST:g} that float32 resolves; later steps may be wrong or diverge; "
            f"{FLOAT32_REMEDY}",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    if np.any(rel < -SCHUR_WARN_REL):
        bad = np.nonzero(rel < -SCHUR_WARN_REL)[0]
        warnings.warn(
            f"Q⊥ was not numerically positive definite at steps {bad.tolist()}: smallest Schur "
            f"eigenvalue {float(np.min(rel)):.3e} of the marginal variance; eigenvalues clipped "
            f"(max jitter {float(np.max(traj.diagnostics['jitter'])):.3e}); see diagnostics",
            RuntimeWarning,
            stacklevel=stacklevel,
        )
    warn_noisy_response(traj, stacklevel=stacklevel + 1)
    if first_bad >= 0:
        raise DivergenceError(first_bad, "DMFT kernels/overlaps", partial=traj,
                              causes=step0_causes(problem) if first_bad == 0 else None)
    return mark_blowup(traj, stacklevel=stacklevel)


# Γ(t, ·) (t < T, the rows that drive the dynamics) whose largest standard error exceeds this
# fraction of its largest entry is reported. The replica errors of m, Q stay honest either way;
# the warning says that the estimate is inefficient.
GAMMA_NOISE_WARN = 1.0


def warn_noisy_response(traj, stacklevel=3) -> None:
    """Warn when the response kernel is dominated by Monte Carlo noise (it drives R and Q⊥)."""
    G = traj.kernels["Gamma"]
    if G.value.shape[0] <= 1:
        return
    size = np.max(np.abs(G.value[:-1]), axis=(1, 2, 3))
    noise = np.max(G.error[:-1], axis=(1, 2, 3))
    bad = np.nonzero(noise > GAMMA_NOISE_WARN * np.maximum(size, 1e-300))[0]
    if len(bad):
        rel = traj.diagnostics["min_schur_eig_rel"]
        warnings.warn(
            f"the response Γ(t, ·) has a Monte Carlo error above {GAMMA_NOISE_WARN:.0%} of its "
            f"size at steps {bad.tolist()} (largest error {float(np.max(noise)):.3g}); smallest "
            f"relative Schur complement {float(np.min(rel)):.2e}. Likely cause: little new "
            "randomness per step (small learning rate, slow dynamics), which the Stein estimator "
            "amplifies. Use more samples, or response='pathwise' for a smooth activation.",
            RuntimeWarning,
            stacklevel=stacklevel,
        )


def replica_test_error(problem, m, Q, a, what="error"):
    """e_g(m, Q, a) (or the test loss, ``what="loss"``) for every replica (R, T, ...), mapped
    one (replica, step) at a time: the quadrature's working array grows with nodes × p² (GBs
    for all replicas at once at T = 100). The problem's numbers are traced (a new Δ does not
    recompile)."""
    R, T = m.shape[:2]
    pr = problem.numbers(kernel_dtype(m.dtype))
    flat = test_error_map(pr, m.reshape((R * T,) + m.shape[2:]),
                          Q.reshape((R * T,) + Q.shape[2:]), a.reshape((R * T,) + a.shape[2:]),
                          what=what)
    return flat.reshape(R, T)


def assemble(problem, st, outs, n_done, first_bad, settings, keep_replicas) -> Trajectory:
    """Replica means and standard errors for the first ``n_done`` steps (0 allowed)."""
    T = n_done
    m = np.asarray(st["m"][:, :T])
    R = m.shape[0]
    Qperp = np.asarray(st["Qp"][:, :T, :T])
    Qtt = kernel_diagonal(Qperp)
    Q = np.einsum("rtqk,rtvk->rtqv", m, m) + Qtt
    a = np.asarray(st["a"][:, :T])
    # the quadrature in the solve's dtype: a float32 solve's kernels are float64 (mixed
    # precision), but a float64 quadrature is several times slower than the float32 one for
    # digits far below the Monte Carlo error
    qdt = np.dtype(settings.get("dtype", m.dtype))
    eg = (replica_test_error(problem, m.astype(qdt), Q.astype(qdt), a.astype(qdt)) if T
          else np.zeros((R, 0)))
    tl = np.asarray(outs["train_loss"][:T]).T if T else np.zeros((R, 0))
    full = {"Qperp": Qperp, "C": st["C"], "Gamma": st["Gamma"], "R": st["R"]}
    kernels = {name: estimate_from_replicas(full[name][:, :T, :T]) for name in KERNELS}

    def over_replicas(name, reduce):
        return np.array([reduce(outs[name][t]) for t in range(T)])

    diag = {
        "min_schur_eig": over_replicas("min_schur_eig", np.min),
        "jitter": over_replicas("jitter", np.max),
        "min_schur_eig_rel": over_replicas("min_schur_eig_rel", np.min),
    }
    return Trajectory(
        kind="dmft",
        problem=problem,
        step=np.arange(T),
        m=estimate_from_replicas(m),
        Q=estimate_from_replicas(Q),
        test_error=estimate_from_replicas(eg),
        train_loss=estimate_from_replicas(tl),
        kernels=kernels,
        a=estimate_from_replicas(a) if problem.trains_second_layer else None,
        per_seed=dict(m=m, Q=Q, test_error=eg, train_loss=tl) if keep_replicas else None,
        diagnostics=diag,
        settings=settings,
        status="ok" if first_bad < 0 else "diverged",
        first_bad_step=first_bad,
        test_loss=(estimate_from_replicas(replica_test_error(problem, m, Q, a, "loss"))
                   if T and problem.loss_fn.classification else None),
    )
