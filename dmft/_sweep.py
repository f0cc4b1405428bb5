"""Phase diagrams: the DMFT (or the simulator) on a grid of hyper-parameters in one call.

``dmft.sweep(problem, over={"lr": [...], "alpha": [...]}, samples=...)`` solves every point of
the outer product of the axes. For the DMFT all points go through one compiled, vmapped sweep
(split into grid batches when memory requires): the problem's numbers are traced inputs, so a
grid costs one compilation whatever its size. Every point uses the same seed, i.e. the same
effective samples (common random numbers): differences between neighbouring points are much
less noisy than the points themselves, and each point equals ``dmft.solve`` of that point with
the same seed (to ~1e-12 in float64; the draws do not depend on the problem's numbers).

``method="simulate"`` runs :func:`dmft.simulate` point by point (its numbers are traced too, so
only a new α, which changes the number of samples n = αd, recompiles).
"""

from __future__ import annotations

import dataclasses
import itertools
import time
import warnings

import numpy as np

from ._errors import DivergenceError, DMFTInputError
from ._options import Options, resolve_options
from ._result import Estimate, Trajectory
from ._validate import check_choice, check_int
from .model import Problem, parse_schedule
from .observables import DERIVED, OBSERVABLES

# the numeric fields a sweep may vary, with their per-point shape (T = steps)
SWEEPABLE = ("alpha", "lr", "ridge", "noise", "m0", "qperp0", "second_layer", "lr_a",
             "batch_fraction", "momentum", "momentum_a")
OBS = tuple(OBSERVABLES)


def _point_value(problem: Problem, name: str, value):
    """A grid value → the Problem field's value (scalars broadcast like make_problem)."""
    T, p, k = problem.steps, problem.p, problem.k
    arr = np.asarray(value, dtype=np.float64)
    if name in ("alpha", "ridge", "noise", "batch_fraction"):
        if arr.ndim:
            raise DMFTInputError(f"`over[{name!r}]` values must be scalars; got {value!r}")
        return float(arr)
    shape = {"lr": (T,), "lr_a": (T,), "m0": (p, k), "qperp0": (p, p), "second_layer": (p,),
             "momentum": (T,), "momentum_a": (T,)}
    if arr.ndim == 0:
        return np.eye(p) * float(arr) if name == "qperp0" else np.full(shape[name], float(arr))
    if arr.shape != shape[name]:
        raise DMFTInputError(
            f"`over[{name!r}]` values must be scalars or have shape {shape[name]}; got a value "
            f"of shape {arr.shape}")
    return arr


def grid_problems(problem: Problem, over: dict) -> tuple[list[str], list[np.ndarray], list]:
    """Validate the axes and build every point's Problem (C order over the axes)."""
    if not isinstance(problem, Problem):
        raise DMFTInputError(f"`problem` must be a dmft.Problem; got {type(problem).__name__}")
    if not isinstance(over, dict) or not over:
        raise DMFTInputError(
            f"`over` must be a non-empty dict {{name: values}} with names in {list(SWEEPABLE)}; "
            f"got over={over!r}")
    names, coords, fields = [], [], []
    for name, values in over.items():
        check_choice("over key", name, set(SWEEPABLE))
        try:
            vals = [_point_value(problem, name, v) for v in values]
        except TypeError:
            raise DMFTInputError(
                f"`over[{name!r}]` must be a sequence of values; got {values!r}") from None
        if not vals:
            raise DMFTInputError(f"`over[{name!r}]` must hold at least one value; got []")
        names.append(name)
        # the coordinate is the value as given (a scalar per point stays a scalar axis)
        scalar = all(np.ndim(v) == 0 for v in values)
        coords.append(np.asarray([float(v) for v in values] if scalar else vals,
                                 dtype=np.float64))
        fields.append(vals)
    if "batch_fraction" in names and not str(problem.schedule).startswith("sgd:"):
        raise DMFTInputError(
            "`over['batch_fraction']` needs a problem with schedule 'sgd:b' (the fraction b is "
            f"a number there; epochs:B is structural); got schedule={problem.schedule!r}")
    points = []
    for combo in itertools.product(*(range(len(c)) for c in coords)):
        changes = {n: fields[i][j] for i, (n, j) in enumerate(zip(names, combo, strict=True))}
        if "batch_fraction" in changes:
            changes["schedule"] = parse_schedule(f"sgd:{changes.pop('batch_fraction')!r}",
                                                 problem.steps)
        try:
            points.append(dataclasses.replace(problem, **changes))
        except DMFTInputError as exc:
            where = ", ".join(f"{n}={_short(v)}" for n, v in changes.items())
            raise DMFTInputError(f"grid point ({where}): {exc}") from None
    return names, coords, points


# Grids above this many points are refused unless ``max_points`` says otherwise: a typo such as
# ``--lr 0.1:1:1000000`` would otherwise start a solve of that many points.
MAX_POINTS = 10_000


def check_grid_size(over: dict, max_points: int) -> int:
    """The number of grid points of ``over`` (product of the axes' lengths), refused above
    ``max_points`` before any point is built."""
    if not isinstance(over, dict):
        return 0  # grid_problems names the error
    sizes = {}
    for name, values in over.items():
        try:
            sizes[name] = len(values)
        except TypeError:
            return 0
    n = int(np.prod([max(v, 1) for v in sizes.values()], dtype=np.float64))
    if n > max_points:
        axes = " x ".join(f"{k} ({v})" for k, v in sizes.items())
        raise DMFTInputError(
            f"`over` makes a grid of {n} points ({axes}), more than `max_points`={max_points}; "
            "use fewer values per axis, split the grid into several sweeps, or raise "
            "`max_points` if it is meant")
    return n


def _short(v) -> str:
    return f"{v:g}" if np.ndim(v) == 0 else np.array2string(np.asarray(v), precision=4)


@dataclasses.dataclass(init=False)
class SweepResult:
    """Estimates over a grid: every observable has the grid's shape in front.

    Attributes:
        method: ``"dmft"`` or ``"simulation"``.
        problem: the base problem (grid values replace its fields point by point).
        axes: the swept names, in grid order.
        coords: per axis, its values: (n,) for scalars, (n,) + field shape otherwise.
        step: steps 0..T.
        observables: name -> :class:`Estimate` of shape grid + per-step shape for the table's
            observables (``m``, ``Q``, ``test_error``, ``train_loss``; also ``res.m``, ...);
            NaN after a point's divergence. :meth:`observable` also gives the derived ones.
        status: per point ``"ok"`` or ``"diverged"``; first_bad_step: per point, or -1.
        points: the per-point :class:`Trajectory` objects (C order), with kernels for DMFT.
        settings: run settings (seed, samples, ..., wall_time_s, grid_batch).
    """

    method: str
    problem: Problem
    axes: list
    coords: list
    step: np.ndarray
    observables: dict
    status: np.ndarray
    first_bad_step: np.ndarray
    points: list
    settings: dict

    def __init__(self, method, problem, axes, coords, step, status, first_bad_step, points,
                 settings, observables=None, **named):
        obs = dict(observables or {})
        obs.update({k: v for k, v in named.items() if k in OBS and v is not None})
        unknown = sorted(set(named) - set(OBS))
        if unknown:
            raise TypeError(f"SweepResult got unexpected arguments {unknown}")
        self.method, self.problem, self.axes, self.coords = method, problem, axes, coords
        self.step, self.status, self.first_bad_step = step, status, first_bad_step
        self.points, self.settings = points, settings
        self.observables = {name: Estimate(*obs[name]) for name in OBS if name in obs}

    def __getattr__(self, name: str):
        if name in OBS and "observables" in self.__dict__:
            return self.__dict__["observables"].get(name)
        raise AttributeError(f"'SweepResult' object has no attribute {name!r}")

    @property
    def shape(self) -> tuple:
        return tuple(len(c) for c in self.coords)

    def point(self, *index) -> Trajectory:
        """The trajectory at grid index ``index`` (one int per axis)."""
        return self.points[int(np.ravel_multi_index(index, self.shape))]

    def observable(self, name: str, step: int | None = None) -> Estimate:
        """An observable over the grid (a reported or a derived one of the table, e.g.
        ``m_norm``), optionally at one step."""
        if name in self.observables:
            est = self.observables[name]
        elif name in DERIVED:
            est = Estimate(*DERIVED[name].derive(self.observables))
        else:
            raise DMFTInputError(
                f"`observable` must be one of {list(self.observables) + list(DERIVED)}; got "
                f"{name!r}")
        if step is None:
            return est
        T = len(self.step) - 1
        step = check_int("step", step, low=0, high=T)
        g = len(self.shape)
        return Estimate(est.value[(slice(None),) * g + (step,)],
                        est.error[(slice(None),) * g + (step,)])


def _stack(points: list[Trajectory], shape, T1: int, p: int, k: int):
    out = {}
    sizes = {"step": T1, "unit": p, "unit2": p, "target_dir": k}
    for name in OBS:
        tail = {name: tuple(sizes[dim] for dim in OBSERVABLES[name].dims)}
        v = np.full((len(points),) + tail[name], np.nan)
        e = np.full_like(v, np.nan)
        for i, tr in enumerate(points):
            est = getattr(tr, name)
            n = est.value.shape[0]
            v[i, :n], e[i, :n] = est.value, est.error
        out[name] = Estimate(v.reshape(shape + tail[name]), e.reshape(shape + tail[name]))
    return out


def sweep(
    problem: Problem,
    over: dict,
    samples: int = 200_000,
    *,
    seed: int = 0,
    replicas: int = 16,
    chunk_size: int | None = None,
    response: str = "stein",
    dtype="float64",
    progress: bool | None = None,
    method: str = "dmft",
    d: int | None = None,
    seeds: int = 16,
    grid_batch: int | None = None,
    devices=None,
    options: Options | None = None,
    max_points: int = MAX_POINTS,
) -> SweepResult:
    """Solve (or simulate) ``problem`` on the outer product of the axes in ``over``.

    Args:
        problem: the base :class:`~dmft.problem.Problem`.
        over: ``{name: values}`` for names in ``SWEEPABLE`` (alpha, lr, ridge, noise, m0,
            qperp0, second_layer, lr_a, momentum, momentum_a, and batch_fraction: b of an
            ``sgd:b`` schedule). A value is a scalar (broadcast as in :func:`dmft.make_problem`)
            or the field's full shape, e.g. a per-step η schedule.
        samples, seed, replicas, chunk_size, response, dtype, progress: as :func:`dmft.solve`;
            every point uses the same seed (common random numbers).
        method: ``"dmft"`` (one compiled, vmapped call per grid batch) or ``"simulate"``.
        d, seeds: the simulator's dimension and seeds (``method="simulate"`` only).
        grid_batch: points solved at once; ``None`` chooses the largest batch whose estimated
            peak memory fits in the free memory (``memory_estimate(..., grid=...)``).
        devices: as :func:`dmft.solve` (default: every device). ``method="dmft"``: the points
            of a grid batch are spread over the devices (``grid_batch`` rounded up to a
            multiple of their count, per-device memory ``grid=grid_batch / devices``); each
            point runs on one device, so the numbers do not depend on the device count.
            ``method="simulate"``: passed to :func:`dmft.simulate` (seeds over devices).
        options: dtype, chunk_size, devices and progress as one :class:`dmft.Options` instead
            of the keywords (a sweep never raises for a diverging point: each point has its
            status, so ``Options.throw`` does not apply).
        max_points: the largest grid accepted (default 10⁴); a larger one is refused before
            any compute.

    Returns:
        A :class:`SweepResult`.
    """
    check_choice("method", method, {"dmft", "simulate"})
    opts = resolve_options(options, dtype=dtype, chunk_size=chunk_size, progress=progress,
                           devices=devices)
    dtype, chunk_size, progress, devices = opts.dtype, opts.chunk_size, opts.progress, opts.devices
    check_grid_size(over, check_int("max_points", max_points, low=1))
    names, coords, points = grid_problems(problem, over)
    shape = tuple(len(c) for c in coords)
    t0 = time.perf_counter()
    if method == "simulate":
        if d is None:
            raise DMFTInputError("`d` is required for method='simulate' (e.g. d=1000)")
        trajs, settings = _simulate_points(points, d, seeds, seed, dtype, progress, devices)
    else:
        if d is not None:
            raise DMFTInputError("`d` is a simulator setting; it is not used by method='dmft'")
        trajs, settings = _solve_points(problem, points, samples, seed, replicas, chunk_size,
                                        response, dtype, progress, grid_batch, devices)
    settings["wall_time_s"] = time.perf_counter() - t0
    T1 = problem.steps + 1
    est = _stack(trajs, shape, T1, problem.p, problem.k)
    status = np.array([tr.status for tr in trajs]).reshape(shape)
    bad = np.array([tr.first_bad_step for tr in trajs]).reshape(shape)
    n_bad = int(np.sum(status != "ok"))
    if n_bad:
        warnings.warn(f"{n_bad} of {len(trajs)} grid points diverged (values after "
                      "first_bad_step are NaN) or blew up (status 'blew_up')", RuntimeWarning,
                      stacklevel=2)
    return SweepResult(method="dmft" if method == "dmft" else "simulation", problem=problem,
                       axes=names, coords=coords, step=np.arange(T1), status=status,
                       first_bad_step=bad, points=trajs, settings=settings, observables=est)


def _solve_points(problem, points, samples, seed, replicas, chunk_size, response, dtype,
                  progress, grid_batch, devices):
    from .solver import solve_points

    return solve_points(problem, points, samples, seed=seed, replicas=replicas,
                        chunk_size=chunk_size, response=response, dtype=dtype, progress=progress,
                        grid_batch=grid_batch, devices=devices)


def _simulate_points(points, d, seeds, seed, dtype, progress, devices=None):
    from .simulator import simulate

    trajs = []
    for pr in points:
        try:
            tr = simulate(pr, d, seeds, seed=seed, dtype=dtype, progress=progress,
                          devices=devices)
        except DivergenceError as exc:
            tr = exc.partial
        trajs.append(tr)
    return trajs, dict(d=d, seeds=seeds, seed=seed, dtype=np.dtype(dtype).name,
                       **{k: trajs[0].settings[k] for k in ("devices", "processes")})
