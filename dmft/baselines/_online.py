"""One-pass (online) SGD baseline: the deterministic d → ∞ ODEs for (m, Q).

Model
-----
Same student, target, square loss, fixed second layer ``a`` and initial condition as the
:class:`~dmft.model.Problem` (docs/THEORY.md §1: h = W x/√d, m = W W*ᵀ/d, Q = W Wᵀ/d, x ~ N(0, I_d),
rows of W* of norm √d). Online SGD uses ONE fresh sample (x, y) per step and never reuses it::

    W ← (1 − ηλ/d) W − (η/√d) g xᵀ,      g = ∂ℓ/∂h (h, y) = (f − y) a ⊙ σ'(h),  h = W x/√d.

Convention for η. The spec's GD step on the sum loss is W ← (1 − ηλ) W − η Σ_ν g_ν x_νᵀ/√d, so
each sample contributes −η g xᵀ/√d per step; the online step above gives each sample exactly the
same weight η. In terms of the normalised weights w = W/√d (h = w x, the convention of Saad &
Solla and of Ben Arous, Gheissari & Jagannath) this is the learning rate η/d:
w ← w − (η/d) g xᵀ. η = ``problem.lr[0]`` (the learning rate must be constant). The ridge acts
as W ← (1 − ηλ/d) W at every SGD step, so over τ = 1 it shrinks W by e^{−ηλ}.

Time. τ = (number of SGD steps)/d = (samples seen)/d. One pass over n = αd samples takes τ = α.
A GD step on αd samples has, per sample, the same weight η as one SGD step, so at small η the
GD step t corresponds to τ = α t (a "fresh" GD step of batch αd is αd SGD steps taken at once);
this is the axis on which the online baseline is drawn next to multi-pass GD
(:func:`dmft.plot.plot_online_baseline`). Note the ridge: GD shrinks by ηλ per step, i.e. per αd
samples, online SGD by ηλ per d samples; online SGD with λ/α matches GD's ridge λ.

Derivation (Biehl & Schwarze 1995; Saad & Solla 1995; Ben Arous, Gheissari & Jagannath 2021).
With W*x/√d = h* and |x|²/d = 1 + O(d^{-1/2}), one step changes the overlaps by::

    Δm = −(ηλ/d) m − (η/d) g h*ᵀ,
    ΔQ = −(2ηλ/d) Q − (η/d)(g hᵀ + h gᵀ) + (η²/d) g gᵀ |x|²/d + O(d^{-2}).

Because x is fresh, (h, h*) given the past is exactly Gaussian with covariance
[[Q, m], [mᵀ, I_k]], so E[Δm | past], E[ΔQ | past] are (1/d) × functions of (m, Q), while the
martingale parts have variance O(d^{-2}) per step, O(d^{-1}) summed over the O(d) steps of a unit
of τ. Hence, as d → ∞, (m, Q)(τ = steps/d) concentrate on the solution of::

    dm/dτ = −η E[g h*ᵀ] − ηλ m,
    dQ/dτ = −η (E[g hᵀ] + E[h gᵀ]) + η² E[g gᵀ] − 2ηλ Q,

with (h, h*) ~ N(0, [[Q, m], [mᵀ, I_k]]), y = g*(h*) + √Δ ξ. The finite-d corrections are
O(d^{-1/2}) fluctuations (mean zero) and an O(1/d) bias; exactly at a fixed point such as m = 0
for a target of information exponent ≥ 2 the finite-d escape (time ∝ log d or more) is NOT
captured by the ODE, which stays at the fixed point up to its Monte Carlo noise.

Expectations
------------
Monte Carlo with ``samples`` fixed standard normals per replica, Z = (z*, z⊥, ξ) ∈ R^{k+p+1},
drawn once from ``fold_in(fold_in(key(seed), STREAM_ONLINE), replica)`` (common random numbers:
the vector field is a smooth function of (m, Q) for smooth activations, so the adaptive
integrator works as for any ODE). Each point is mapped to h* = z*, h = m z* + L z⊥, where L is the
Cholesky factor of the Schur complement Q − m mᵀ (its eigenvalues clipped at a tiny floor, so
that a rank-deficient complement never gives NaN). With ``moment_match=True`` (default) each
replica's Z is first whitened to sample mean exactly 0 and sample covariance exactly I; then all
expectations of polynomials of degree ≤ 2 in (h, h*, ξ) are exact (the linear model's ODE is
integrated exactly), at the price of an O(1/samples) bias for the others, negligible next to the
O(samples^{-1/2}) Monte Carlo error. ``replicas`` independent sample sets (vmapped) integrate the
ODE independently; values are the replica mean and errors the standard error of that mean.

Observables. The test error is :func:`dmft.observables.test_error` of each replica's (m, Q)
(quadrature; label noise Δ/2 included). Online SGD never reuses a sample, so its "train loss"
(the loss on the sample about to be used) IS the test error: ``train_loss`` holds the same
Estimate.
"""

from __future__ import annotations

import time
import warnings

import diffrax
import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from jax.sharding import PartitionSpec as P

from .._devices import global_array, replicated, resolve_devices, run_info
from .._errors import DivergenceError, DMFTInputError
from .._options import Options, resolve_options
from .._result import Trajectory, mark_blowup
from .._rng import STREAM_ONLINE, stream_key
from .._validate import check_int, check_real
from ..model import Problem, check_problem, get_activation, loss_grad_h
from ..observables import test_error as _test_error

OVERFLOW = 1e8  # |m| or |Q| above this counts as a divergence
SOLVER = "Tsit5"
_CLIP_REL = 1e-12  # eigenvalue floor of Q − m mᵀ, relative to max(1, its largest eigenvalue)


def solve_online(
    problem: Problem,
    horizon: float,
    samples: int = 200_000,
    *,
    n_out: int = 101,
    seed: int = 0,
    replicas: int = 16,
    rtol: float = 1e-4,
    atol: float = 1e-6,
    moment_match: bool = True,
    max_steps: int = 100_000,
    dtype="float64",
    progress: bool | None = None,
    devices=None,
    throw: bool = True,
    options: Options | None = None,
) -> Trajectory:
    """Integrate the d → ∞ online-SGD ODEs for (m, Q) over τ ∈ [0, horizon].

    Args:
        problem: the :class:`~dmft.model.Problem`; its ``lr`` must be constant (η), ``ridge``
            is λ, ``noise`` Δ, ``m0``/``qperp0`` the initial condition. ``alpha``, ``schedule``
            and the number of steps are not used (online SGD has no fixed data set).
        horizon: final time τ = (SGD steps)/d = (samples seen)/d, > 0.
        n_out: number of save times, evenly spaced over [0, horizon] (>= 2).
        samples: Monte Carlo points per replica (>= 1000).
        seed: user seed; the same seed gives the same result.
        rtol, atol: tolerances of diffrax's PID step-size controller.
        replicas: independent Monte Carlo sample sets (>= 2), for the standard error.
        moment_match: whiten each sample set (exact mean 0, covariance I); see module docs.
        max_steps: cap on the integrator's steps.
        dtype: ``"float64"`` (default; needs JAX x64, refused otherwise, as in
            :func:`dmft.solve`) or ``"float32"``.
        progress: diffrax's tqdm meter; ``None`` shows it only on a terminal.
        devices: ``None`` (every device), a count or a list of devices of this process; the
            replicas are spread over them (``replicas`` must be a multiple of their number).
        throw: ``False`` returns the partial trajectory of a diverging run (status
            ``"diverged"``) instead of raising.
        options: the execution options (dtype, devices, progress, throw) as one
            :class:`dmft.Options`, instead of the keywords.

    Returns:
        A :class:`~dmft.Trajectory` of kind ``"online"`` whose ``step`` holds τ (floats).

    Raises:
        DMFTInputError: invalid arguments (before any computation).
        DivergenceError: (m, Q) became non-finite or exceeded 1e8; ``.partial`` holds the save
            times before it and the message gives τ.
    """
    check_problem(problem)
    opts = resolve_options(options, dtype=dtype, progress=progress, devices=devices,
                           throw=throw)
    if opts.chunk_size is not None:
        raise DMFTInputError("`chunk_size` does not apply to solve_online (its Monte Carlo "
                             f"points are not chunked); got chunk_size={opts.chunk_size}")
    dtype = jnp.dtype(opts.dtype)
    args = _check(problem, horizon, n_out, samples, seed, rtol, atol, replicas, max_steps)
    devs = resolve_devices(opts.devices)
    if args["replicas"] % len(devs) or jax.process_count() > 1:
        raise DMFTInputError(
            f"`replicas`={replicas} must be a multiple of the {len(devs)} devices of "
            "solve_online, all of this process")
    t_start = time.perf_counter()
    ms, Qs, t_saved, ok, stopped = _integrate(problem, args, moment_match, dtype, devs,
                                              opts.show_progress)
    settings = dict(horizon=args["horizon"], samples=args["samples"], seed=args["seed"],
                    replicas=args["replicas"], solver=SOLVER, rtol=args["rtol"],
                    atol=args["atol"], moment_match=bool(moment_match),
                    max_steps=args["max_steps"], lr=args["eta"], dtype=np.dtype(dtype).name,
                    wall_time_s=time.perf_counter() - t_start, **run_info(devs))
    return _finish(problem, args, ms, Qs, t_saved, ok, stopped, settings, opts.throw)


def _check(problem, horizon, n_out, samples, seed, rtol, atol, replicas, max_steps) -> dict:
    """The validated numeric arguments of :func:`solve_online` (before any compute)."""
    if problem.loss != "square":
        raise DMFTInputError(
            f"`loss` must be 'square' for the online-SGD ODEs (not implemented for other "
            f"losses yet); got loss={problem.loss!r}"
        )
    if problem.uses_momentum:
        raise DMFTInputError(
            "`momentum` must be 0 and `nesterov` False for the online-SGD ODEs (plain online "
            f"SGD only); got momentum max {float(problem.momentum_per_step.max()):g}, "
            f"nesterov={problem.nesterov}")
    lr = np.asarray(problem.lr, dtype=np.float64)
    if not np.all(lr == lr[0]):
        raise DMFTInputError(
            "`problem.lr` must be constant for online SGD (the ODE has one learning rate η); "
            f"got lr values in [{lr.min():g}, {lr.max():g}]; build the problem with a scalar lr"
        )
    return dict(
        horizon=check_real("horizon", horizon, low=0.0, low_open=True),
        n_out=check_int("n_out", n_out, low=2, high=1_000_000),
        samples=check_int("samples", samples, low=1000, high=10**9),
        seed=check_int("seed", seed, low=0, high=2**63 - 1),
        rtol=check_real("rtol", rtol, low=0.0, low_open=True, high=1.0),
        atol=check_real("atol", atol, low=0.0, low_open=True),
        replicas=check_int("replicas", replicas, low=2, high=4096),
        max_steps=check_int("max_steps", max_steps, low=1),
        eta=float(lr[0]),
    )


def _integrate(problem, args, moment_match, dtype, devs, progress):
    """Draw each replica's Monte Carlo points and integrate the ODEs (replicas over ``devs``)."""
    p, k, replicas = problem.p, problem.k, args["replicas"]
    root = stream_key(args["seed"], STREAM_ONLINE)
    keys = jax.vmap(lambda r: jax.random.fold_in(root, r))(jnp.arange(replicas))
    draw = jax.jit(jax.vmap(lambda kk: _draw(kk, args["samples"], k + p + 1, moment_match,
                                             dtype)))
    Z = draw(keys)
    m0 = jnp.asarray(problem.m0, dtype)
    Q0 = jnp.asarray(problem.m0 @ problem.m0.T + problem.qperp0, dtype)
    y0 = (jnp.broadcast_to(m0, (replicas, p, k)), jnp.broadcast_to(Q0, (replicas, p, p)))
    params = jnp.asarray([args["eta"], problem.ridge, problem.noise], dtype)
    a = jnp.asarray(problem.second_layer, dtype)
    ts = jnp.linspace(0.0, args["horizon"], args["n_out"], dtype=dtype)
    tol = jnp.asarray([args["rtol"], args["atol"]], dtype)
    if len(devs) > 1:  # replicas over the devices; the rest replicated
        mesh = Mesh(np.array(devs), ("replica",))
        Z, y0 = jax.tree.map(lambda x: global_array(x, mesh, P("replica")), (Z, y0))
        params, a, ts, tol = replicated((params, a, ts, tol), mesh)
    meter = diffrax.TqdmProgressMeter() if progress else diffrax.NoProgressMeter()
    with jax.default_device(devs[0]):
        return jax.device_get(_run(_Field(problem.activation, problem.target), y0, Z, params, a,
                                   ts, tol, args["max_steps"], meter))


def _finish(problem, args, ms, Qs, t_saved, ok, stopped, settings, throw) -> Trajectory:
    """The trajectory up to the last good save point; a divergence raises (or, with
    ``throw=False``, warns and returns the partial trajectory)."""
    n_out, max_steps = args["n_out"], args["max_steps"]
    ts = np.asarray(jnp.linspace(0.0, args["horizon"], n_out, dtype=settings["dtype"]))
    # Saved entries: the grid times reached, then the final time (t1, or where an event stopped
    # the solve), then +inf for whatever was not reached.
    n_saved = int(np.sum(np.isfinite(t_saved)))
    t_end = float(t_saved[n_saved - 1]) if n_saved else 0.0
    n_grid = max(min(n_saved - 1, n_out), 0)
    ms = np.moveaxis(ms[:n_grid], 0, 1)  # (replica, time, p, k)
    Qs = np.moveaxis(Qs[:n_grid], 0, 1)
    good = np.isfinite(ms).all(axis=(0, 2, 3)) & np.isfinite(Qs).all(axis=(0, 2, 3))
    good &= (np.abs(ms).max(axis=(0, 2, 3), initial=0.0) <= OVERFLOW)
    good &= (np.abs(Qs).max(axis=(0, 2, 3), initial=0.0) <= OVERFLOW)
    n_done = n_grid if good.all() else int(np.argmin(good))
    traj = _assemble(problem, ts[:n_done], ms[:, :n_done], Qs[:, :n_done], settings)
    if n_done == n_out:
        return mark_blowup(traj, stacklevel=3)
    traj.status = "diverged"
    traj.first_bad_step = n_done
    if stopped:
        reason = f"|m| or |Q| passed {OVERFLOW:.0e} or became non-finite at tau = {t_end:.6g}"
    elif not ok:
        reason = (f"the integrator failed at tau = {t_end:.6g} (max_steps={max_steps} "
                  "reached? try a larger max_steps or looser rtol/atol)")
    else:
        reason = f"a saved value is beyond {OVERFLOW:.0e}"
    err = DivergenceError(
        n_done,
        f"the online-SGD ODE state (m, Q) at save point {n_done} (tau = {ts[n_done]:.6g}; "
        f"{reason})",
        partial=traj,
    )
    if throw:
        raise err
    warnings.warn(str(err), RuntimeWarning, stacklevel=3)
    return traj


def _draw(key, n: int, dim: int, moment_match: bool, dtype):
    z = jax.random.normal(key, (n, dim), dtype=dtype)
    if not moment_match:
        return z
    z = z - jnp.mean(z, axis=0, keepdims=True)
    L = jnp.linalg.cholesky(z.T @ z / n)
    return jax.scipy.linalg.solve_triangular(L, z.T, lower=True).T


def _factor(S):
    """Cholesky factor of the symmetric matrix S after clipping its eigenvalues at a floor."""
    S = 0.5 * (S + S.T)
    w, V = jnp.linalg.eigh(S)
    floor = _CLIP_REL * jnp.maximum(1.0, jnp.max(w))
    return jnp.linalg.cholesky((V * jnp.maximum(w, floor)[None, :]) @ V.T)


def online_field(m, Q, Z, eta, ridge, noise, a, act, target):
    """(dm/dτ, dQ/dτ) for one replica, expectations over the fixed points ``Z`` (N, k+p+1).

    Args:
        m: (p, k) overlaps; Q: (p, p) Gram matrix.
        Z: standard normal points, columns (z*, z⊥, ξ).
        eta, ridge, noise: η, λ, Δ.
        a: second layer (p,); act: the :class:`~dmft.model.Activation`; target: g*.
    """
    p, k = m.shape
    n = Z.shape[0]
    zs, zp, xi = Z[:, :k], Z[:, k:k + p], Z[:, k + p]
    L = _factor(Q - m @ m.T)
    h = zs @ m.T + zp @ L.T
    y = target(zs) + jnp.sqrt(noise) * xi
    g = loss_grad_h(h, y, a, act)
    e_gs = g.T @ zs / n
    e_gh = g.T @ h / n
    e_gg = g.T @ g / n
    dm = -eta * e_gs - eta * ridge * m
    dQ = -eta * (e_gh + e_gh.T) + eta**2 * e_gg - 2.0 * eta * ridge * Q
    return dm, 0.5 * (dQ + dQ.T)


class _Field(eqx.Module):
    """The replica-vmapped vector field and the blow-up event (activation/target static)."""

    act_name: str = eqx.field(static=True)
    target: object = eqx.field(static=True)

    def __call__(self, t, y, args):
        Z, params, a = args
        field_r = jax.vmap(online_field, in_axes=(0, 0, 0, None, None, None, None, None, None))
        return field_r(y[0], y[1], Z, params[0], params[1], params[2], a,
                       get_activation(self.act_name), self.target)


def _blown_up(t, y, args, **kwargs):
    big = jnp.maximum(jnp.max(jnp.abs(y[0])), jnp.max(jnp.abs(y[1])))
    return ~(big <= OVERFLOW)  # also true for NaN


@eqx.filter_jit
def _run(field, y0, Z, params, a, ts, tol, max_steps, meter):
    """The diffrax solve; numbers (η, λ, Δ, a, tolerances, save times) are traced, so only a
    new activation, target, size, ``max_steps`` or progress setting compiles again."""
    sol = diffrax.diffeqsolve(
        diffrax.ODETerm(field),
        diffrax.Tsit5(),
        t0=ts[0],
        t1=ts[-1],
        dt0=None,
        y0=y0,
        args=(Z, params, a),
        saveat=diffrax.SaveAt(ts=ts, t1=True),
        stepsize_controller=diffrax.PIDController(rtol=tol[0], atol=tol[1]),
        event=diffrax.Event(_blown_up),
        max_steps=max_steps,
        throw=False,
        progress_meter=meter,
    )
    ms, Qs = sol.ys
    ok = sol.result == diffrax.RESULTS.successful
    stopped = sol.result == diffrax.RESULTS.event_occurred
    return ms, Qs, sol.ts, ok, stopped


def _assemble(problem, ts, ms, Qs, settings) -> Trajectory:
    """Replica means and standard errors; ``ms`` (R, T, p, k), ``Qs`` (R, T, p, p)."""
    if ms.shape[1]:
        eg = np.asarray(jax.device_get(_test_error(problem, jnp.asarray(ms), jnp.asarray(Qs))))
    else:
        eg = np.zeros(ms.shape[:2])
    Qm = Qs.mean(axis=0)
    mm = ms.mean(axis=0)
    schur = Qm - np.einsum("tjk,tlk->tjl", mm, mm)
    min_eig = (np.linalg.eigvalsh(0.5 * (schur + np.swapaxes(schur, -1, -2))).min(axis=-1)
               if len(ts) else np.zeros(0))
    # one pass over fresh samples: the training loss is the test error
    return Trajectory.from_replicas(
        "online", problem, np.asarray(ts, dtype=np.float64),
        {"m": ms, "Q": Qs, "test_error": eg, "train_loss": eg.copy()},
        diagnostics={"min_schur_online": min_eig}, settings=settings)


__all__ = ["solve_online", "online_field", "STREAM_ONLINE"]
