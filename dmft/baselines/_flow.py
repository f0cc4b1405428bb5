"""Gradient-flow limit of the DMFT (η → 0 at fixed time τ = Σ_t η_t).

Full-batch GD with learning rate η is the explicit Euler scheme of gradient flow
dW/dτ = −λW − ∇L(W) with step η, and the exact discrete DMFT of GD is the DMFT of that scheme.
The continuous-time DMFT is a stochastic Volterra system (the memory kernels Γ(τ,s), R(τ,s) act
on the whole past of each effective sample), so we do not integrate it with a general-purpose
ODE solver: any such solver would need the sampled histories as state and interpolated Monte
Carlo kernels. Instead we take the η → 0 limit of the exact discrete solution directly: the gap
of the discrete DMFT to the flow is O(η) (docs/THEORY.md §8.1: it halves with η), so Richardson
extrapolation

    F_flow(τ) = 2 F_{η/2}(τ) − F_η(τ) + O(η²)

over two forward sweeps (steps η and η/2, same seed) gives the flow to second order. The two
sweeps share their random numbers replica by replica, and the extrapolation is done per replica
before averaging, so the reported standard errors include the correlation of the two sweeps.
Checked against the closed-form gradient flow of the linear model (Marchenko–Pastur,
:func:`dmft.baselines.linear_gradient_flow`), and discrete GD at η → 0 converges to it.
"""

from __future__ import annotations

import dataclasses
import warnings

import numpy as np

from .._errors import DivergenceError, DMFTInputError
from .._options import Options, resolve_options
from .._result import Trajectory, mark_blowup
from .._validate import check_real
from ..model import Problem, check_problem
from ..observables import OBSERVABLES


def solve_flow(
    problem: Problem,
    horizon: float,
    samples: int = 200_000,
    *,
    dt: float = 0.1,
    seed: int = 0,
    replicas: int = 16,
    chunk_size: int | None = None,
    response: str = "stein",
    dtype="float64",
    progress: bool | None = None,
    devices=None,
    throw: bool = True,
    options: Options | None = None,
) -> Trajectory:
    """DMFT of gradient flow on τ ∈ {0, dt, 2dt, ..., horizon}.

    Args:
        problem: the problem; its learning rates and step count are ignored (the flow has none),
            everything else (student, target, α, Δ, λ, m_0, Q⊥_0) is used. Needs the ``reuse``
            schedule and a fixed second layer.
        horizon: final time τ (a multiple of ``dt``).
        dt: coarse step; the sweeps use η = dt and η = dt/2.
        samples, seed, replicas, chunk_size, response, dtype, progress, devices: as for
            :func:`dmft.solve` (each sweep uses all ``samples``).
        throw: ``False`` returns the flow up to the last τ that both sweeps reached (status
            ``"diverged"``) instead of raising when one diverges.
        options: the execution options as one :class:`dmft.Options`, instead of the keywords.

    Returns:
        A :class:`~dmft.Trajectory` of kind ``"flow"`` whose ``step`` holds τ.
    """
    from ..solver import solve

    check_problem(problem)
    opts = resolve_options(options, dtype=dtype, chunk_size=chunk_size, progress=progress,
                           devices=devices, throw=throw)
    horizon, dt, n_coarse = _check(problem, horizon, dt)
    sweeps, failure = [], None
    for eta, steps in ((dt, n_coarse), (dt / 2, 2 * n_coarse)):
        pr = dataclasses.replace(problem, lr=np.full(steps, eta), lr_a=None)
        try:
            sweeps.append(solve(pr, samples, seed=seed, replicas=replicas, response=response,
                                keep_replicas=True, dtype=opts.dtype,
                                chunk_size=opts.chunk_size, progress=opts.progress,
                                devices=opts.devices))
        except DivergenceError as exc:
            if opts.throw or exc.partial is None:
                raise
            failure = failure or exc
            sweeps.append(exc.partial)
    settings = dict(horizon=horizon, dt=dt, samples=samples, seed=seed, replicas=replicas,
                    response=response, method="Richardson extrapolation of the discrete DMFT "
                    "(eta = dt and dt/2)")
    traj = _extrapolate(problem, *sweeps, dt, settings, failure)
    if failure is not None:
        warnings.warn(f"gradient flow stopped at tau = {traj.step[-1] if len(traj.step) else 0:g}:"
                      f" {failure}", RuntimeWarning, stacklevel=2)
        return traj
    return mark_blowup(traj, stacklevel=2)


def _check(problem, horizon, dt) -> tuple[float, float, int]:
    """(horizon, dt, number of coarse steps), validated before any compute."""
    horizon = check_real("horizon", horizon, low=0.0, low_open=True)
    dt = check_real("dt", dt, low=0.0, low_open=True, high=horizon)
    n_coarse = int(round(horizon / dt))
    if abs(n_coarse * dt - horizon) > 1e-9 * horizon:
        raise DMFTInputError(
            f"`horizon` must be a multiple of `dt`; got horizon={horizon}, dt={dt}"
        )
    if problem.schedule != "reuse":
        raise DMFTInputError(
            f"`schedule` must be 'reuse' for gradient flow (full-batch); got "
            f"schedule={problem.schedule!r}"
        )
    if problem.trains_second_layer:
        raise DMFTInputError("`lr_a` must be 0 for solve_flow (a fixed second layer)")
    if problem.uses_momentum:
        raise DMFTInputError(
            "`momentum` must be 0 and `nesterov` False for solve_flow (the η → 0 limit of plain "
            f"GD); got momentum max {float(problem.momentum_per_step.max()):g}, "
            f"nesterov={problem.nesterov}")
    return horizon, dt, n_coarse


def _extrapolate(problem, coarse, fine, dt, settings, failure) -> Trajectory:
    """The flow at the times both sweeps reached: per replica, 2 x(η = dt/2) − x(η = dt), which
    cancels the O(η) error."""
    n = min(len(coarse.step), (len(fine.step) + 1) // 2)
    extrapolated = {name: 2.0 * fine.per_seed[name][:, : 2 * n : 2] - coarse.per_seed[name][:, :n]
                    for name in OBSERVABLES}
    settings["wall_time_s"] = coarse.settings["wall_time_s"] + fine.settings["wall_time_s"]
    return Trajectory.from_replicas(
        "flow", problem, dt * np.arange(n), extrapolated,
        diagnostics={
            "min_schur_eig_rel_fine": fine.diagnostics["min_schur_eig_rel"][: 2 * n : 2],
            "jitter_fine": fine.diagnostics["jitter"][: 2 * n : 2],
        },
        settings=settings,
        status="ok" if failure is None else "diverged",
        first_bad_step=-1 if failure is None else n,
    )
