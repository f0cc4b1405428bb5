"""``dmft.optimize``: gradient-based design of a problem's numbers on the DMFT.

The objective is a function of the observables of :func:`dmft.solve_fn` at a fixed seed (a
deterministic function of the numbers); its gradient comes from reverse mode through the
checkpointed steps. The optimiser is an optax ``GradientTransformation`` (Adam by default) acting
on unconstrained parameters: each chosen field is mapped through its constraint (``lr``,
``lr_a``, ``alpha``, ``ridge``, ``noise``: softplus, > 0; ``momentum*``: sigmoid, in (0, 1);
every other field free). Per-step fields (T + 1 entries in :class:`~dmft.model.Numbers`, the
last unused) are optimised on their first T entries; the last stays 0.

The optimum is tuned to the seed's samples (common random numbers): re-evaluate it with another
seed (or the simulator) before claiming an improvement, as ``validation/claims/schedule_design.py``
does.
"""

from __future__ import annotations

import dataclasses
import sys
import time
import warnings

import jax
import jax.numpy as jnp
import numpy as np

from ._errors import DMFTInputError
from ._validate import check_choice, check_int, check_real

# name -> (what it means, the function of solve_fn's outputs that is minimised)
OBJECTIVES = {
    "m_norm": ("maximise ||m_T|| (the overlap with the target at the last step)",
               lambda out: -out["m_norm"][-1]),
    "test_error": ("minimise the test error at the last step",
                   lambda out: out["test_error"][-1]),
    "train_loss": ("minimise the train loss at the last step",
                   lambda out: out["train_loss"][-1]),
}

# field name (or prefix) -> constraint; fields not listed are free
CONSTRAINTS = {"lr": "positive", "lr_a": "positive", "alpha": "positive", "ridge": "positive",
               "noise": "positive", "momentum": "unit"}
# the default width of the smoothed Dirac mass of ReLU's σ'' in optimize's gradients (fields
# h are O(1): bias O(w²) ~ 1e-2 relative, each replica's N samples give ~N w of them near 0)
KINK_WIDTH = 0.1
# smallest value a positive field starts from (softplus⁻¹(0) is -inf): a zero lr_a or ridge
# starts here
POSITIVE_START = 1e-6


def constraint(name: str) -> str:
    """``"positive"``, ``"unit"`` or ``"free"`` for a field of Numbers."""
    if name in CONSTRAINTS:
        return CONSTRAINTS[name]
    return "unit" if name.startswith("momentum") else "free"


def _to_raw(kind: str, x):
    x = np.asarray(x, dtype=np.float64)
    if kind == "positive":
        x = np.maximum(x, POSITIVE_START)
        return x + np.log(-np.expm1(-x))  # softplus⁻¹
    if kind == "unit":
        x = np.clip(x, 1e-6, 1 - 1e-6)
        return np.log(x) - np.log1p(-x)  # logit
    return x


def _from_raw(kind: str, u):
    if kind == "positive":
        return jax.nn.softplus(u)
    if kind == "unit":
        return jax.nn.sigmoid(u)
    return u


def allowed_fields() -> list[str]:
    """Fields that ``wrt`` may name: the numeric fields of Numbers that are fields of Problem
    (so that the optimised problem can be rebuilt), looked up by name."""
    from .model import Problem
    from .solver import number_fields

    problem_fields = {f.name for f in dataclasses.fields(Problem)}
    return [n for n in number_fields() if n in problem_fields]


def check_wrt(wrt) -> tuple[str, ...]:
    if isinstance(wrt, str):
        wrt = (wrt,)
    try:
        wrt = tuple(wrt)
    except TypeError:
        raise DMFTInputError(f"`wrt` must be a field name or a sequence of field names; got "
                             f"wrt={wrt!r}") from None
    allowed = allowed_fields()
    if not wrt:
        raise DMFTInputError(f"`wrt` must name at least one field among {allowed}; got wrt=()")
    for name in wrt:
        if name not in allowed:
            raise DMFTInputError(f"`wrt` entries must be fields of dmft.numbers(problem) among "
                                 f"{allowed}; got {name!r}")
    if len(set(wrt)) != len(wrt):
        raise DMFTInputError(f"`wrt` must not repeat a field; got wrt={list(wrt)}")
    return wrt


def check_objective(objective):
    if callable(objective):
        return getattr(objective, "__name__", "custom"), objective
    check_choice("objective", objective, set(OBJECTIVES))
    return objective, OBJECTIVES[objective][1]


@dataclasses.dataclass
class OptimizeResult:
    """What :func:`optimize` returns.

    Attributes:
        problem: the optimised problem (the iterate with the lowest objective).
        initial_problem: the problem it started from.
        objective: the objective's name; ``minimised`` says what was minimised.
        wrt: the optimised fields.
        history: per iteration i = 0..steps (i = steps: after the last update): ``objective``
            (the minimised value), ``grad_norm`` (of the unconstrained parameters; NaN at the
            last entry, where no gradient is taken), and one array per field of ``wrt`` (its
            values in Problem's shape, e.g. (steps, T) for ``lr``).
        best_iteration: the iteration of ``problem``.
        status: ``"ok"``, or ``"nonfinite"`` when the objective or its gradient stopped being
            finite (the loop stopped there, ``problem`` is the best finite iterate).
        settings: samples, seed, replicas, dtype, response, steps, learning rate, optimiser,
            wall time.
    """

    problem: object
    initial_problem: object
    objective: str
    minimised: str
    wrt: tuple
    history: dict
    best_iteration: int
    status: str
    settings: dict

    def __str__(self) -> str:
        h = self.history["objective"]
        lines = [f"OptimizeResult: objective {self.objective!r} ({self.minimised}) over "
                 f"{list(self.wrt)}, status {self.status}",
                 f"  minimised value {h[0]:.6g} -> {h[self.best_iteration]:.6g} "
                 f"(iteration {self.best_iteration} of {len(h) - 1})"]
        for name in self.wrt:
            lines.append(f"  {name}: {np.round(np.asarray(getattr(self.problem, name)), 4)}")
        return "\n".join(lines)

    def save(self, path, *, command_line: str | None = None) -> str:
        """Write to HDF5 atomically (docs/FORMAT.md, "Optimisation files")."""
        from .io import save_optimize

        return save_optimize(self, path, command_line=command_line)


def _field_shape(problem, name) -> tuple:
    ref = getattr(problem, name)
    return (problem.steps,) if ref is None else np.shape(np.asarray(ref))  # lr_a None: (T,)


def _problem_value(problem, name, value):
    """``value`` (Numbers' shape) in the shape of ``problem``'s field ``name`` (per-step fields
    lose their unused last entry)."""
    shape = _field_shape(problem, name)
    value = np.asarray(value, dtype=np.float64)
    if not shape:
        return float(value)
    if len(shape) == 1 and value.shape == (shape[0] + 1,):
        value = value[:shape[0]]
    return value


def optimize(problem, objective="m_norm", *, wrt=("lr",), steps: int = 50,
             samples: int = 20_000, seed: int = 0, replicas: int = 4,
             learning_rate: float = 0.05, optimizer=None, dtype="float64",
             response: str = "stein", kink_width="auto", progress: bool | None = None,
             out=None, command_line: str | None = None) -> OptimizeResult:
    """Optimise the numbers ``wrt`` of ``problem`` by gradient descent on the DMFT.

    Args:
        problem: the starting :class:`~dmft.Problem`.
        objective: ``"m_norm"`` (maximise ‖m_T‖), ``"test_error"`` or ``"train_loss"``
            (minimise at step T), or a callable ``objective(outputs) -> scalar`` to *minimise*,
            ``outputs`` being the dict of :func:`dmft.solve_fn`.
        wrt: fields of ``dmft.numbers(problem)`` to optimise (names checked against its
            dataclass fields; e.g. ``("lr",)``, ``("lr", "ridge")``).
        steps: optimiser iterations.
        samples, seed, replicas, dtype, response: the DMFT of every evaluation (one seed:
            the objective is a deterministic function of the numbers).
        learning_rate: of the default optimiser, ``optax.adam(learning_rate)`` on the
            unconstrained parameters (softplus⁻¹ of a learning rate, ...).
        optimizer: any optax ``GradientTransformation`` instead of the default.
        kink_width: ReLU only (see :func:`dmft.solve_fn`): the width of the Gaussian that
            stands for the Dirac mass of σ'' in the gradient. ``"auto"`` (default):
            ``KINK_WIDTH`` for a non-smooth activation, None for a smooth one; ``None``: the
            piecewise derivative of the finite-sample objective, which misses that term (an
            optimiser following it can drift where the objective gets worse).
        progress: one line per iteration on stderr; ``None`` only on a terminal.
        out: also write the result to this HDF5 file (checked before any compute).

    Returns:
        :class:`OptimizeResult` (the best iterate, its history).
    """
    from .solver import check_memory, solve_fn, unchecked_fn

    custom = optimizer is not None
    wrt, name, fn, steps, learning_rate, optimizer, out = _check_arguments(
        problem, objective, wrt, steps, learning_rate, optimizer, out)
    if isinstance(kink_width, str) and kink_width == "auto":
        kink_width = None if problem.act.smooth else KINK_WIDTH
    f = solve_fn(problem, samples, seed=seed, replicas=replicas, dtype=dtype, response=response,
                 kink_width=kink_width)
    check_memory(problem, samples, replicas, None, response, f.structure.dtype, mode="reverse")
    par = _Parametrisation(problem, jax.tree.map(jnp.asarray, f.numbers), wrt)
    observables = unchecked_fn(f)

    def loss(raw):
        outs, ok = observables(par.to_numbers(raw))
        return fn(outs), jnp.all(ok)

    show = sys.stderr.isatty() if progress is None else bool(progress)
    t0 = time.perf_counter()
    hist, best_raw, best_i, status = _descend(loss, optimizer, par, steps, name, show, t0)
    settings = dict(samples=samples, seed=seed, replicas=replicas, dtype=f.structure.dtype_name,
                    response=response, kink_width=kink_width, steps=steps,
                    learning_rate=learning_rate, optimizer="custom" if custom else "adam",
                    wall_time_s=time.perf_counter() - t0)
    result = OptimizeResult(problem=dataclasses.replace(problem, **par.problem_values(best_raw)),
                            initial_problem=problem, objective=name,
                            minimised=OBJECTIVES[name][0] if name in OBJECTIVES else
                            "minimise the custom objective", wrt=wrt,
                            history={k: np.asarray(v, dtype=np.float64) for k, v in hist.items()},
                            best_iteration=best_i, status=status, settings=settings)
    if out is not None:
        result.save(out, command_line=command_line)
    return result


def _check_arguments(problem, objective, wrt, steps, learning_rate, optimizer, out):
    """:func:`optimize`'s arguments checked, before any compute: ``(wrt, objective's name, its
    function, steps, learning_rate, optimizer, out)``, the default optimiser (Adam) filled in."""
    import optax

    from .model import check_problem

    check_problem(problem)
    wrt = check_wrt(wrt)
    name, fn = check_objective(objective)
    steps = check_int("steps", steps, low=1, high=1_000_000)
    if optimizer is None:
        learning_rate = check_real("learning_rate", learning_rate, low=0.0, low_open=True)
        optimizer = optax.adam(learning_rate)
    elif not isinstance(optimizer, optax.GradientTransformation):
        raise DMFTInputError(f"`optimizer` must be an optax.GradientTransformation; got "
                             f"{type(optimizer).__name__}")
    if out is not None:
        from .io import check_output_path

        out = check_output_path(out)
    return wrt, name, fn, steps, learning_rate, optimizer, out


class _Parametrisation:
    """The unconstrained parameters ``raw`` (a dict, one array per field of ``wrt``) of the
    Numbers ``template``: each field through its constraint (:func:`constraint`); a per-step
    field (T + 1 entries in Numbers, T in Problem) on its first T entries, the last kept 0."""

    def __init__(self, problem, template, wrt):
        T = problem.steps
        self.problem, self.template, self.wrt = problem, template, wrt
        self.kinds = {n: constraint(n) for n in wrt}
        self.padded = {n: np.shape(getattr(template, n)) == (T + 1,)
                       and _field_shape(problem, n) == (T,) for n in wrt}
        self.raw0 = {n: jnp.asarray(_to_raw(self.kinds[n], np.asarray(getattr(template, n))[:T]
                                            if self.padded[n] else getattr(template, n)),
                                    template.alpha.dtype)
                     for n in wrt}

    def to_numbers(self, raw):
        """The Numbers of ``raw``: ``template`` with the fields of ``wrt`` replaced."""
        new = {}
        for n, u in raw.items():
            x = _from_raw(self.kinds[n], u)
            if self.padded[n]:
                x = jnp.concatenate([x, jnp.zeros((1,), x.dtype)])
            new[n] = x
        return dataclasses.replace(self.template, **new)

    def problem_values(self, raw) -> dict:
        """The fields of ``wrt`` at ``raw`` in Problem's shapes (for ``dataclasses.replace``)."""
        nb = self.to_numbers(raw)
        return {n: _problem_value(self.problem, n, np.asarray(getattr(nb, n))) for n in self.wrt}


def _descend(loss, optimizer, par, steps, name, show, t0):
    """The optimiser's loop from ``par.raw0``: ``steps`` updates on ``loss(raw) -> (value, ok)``
    and the objective after the last one, stopping at the first non-finite value or gradient.
    Returns ``(history lists, best raw, its iteration, status)``."""
    import optax

    value_and_grad = jax.jit(jax.value_and_grad(loss, has_aux=True))
    value_only = jax.jit(loss)
    opt_state = optimizer.init(par.raw0)
    raw = par.raw0
    hist = {"objective": [], "grad_norm": [], **{n: [] for n in par.wrt}}
    best, best_raw, best_i, status = np.inf, par.raw0, 0, "ok"
    for i in range(steps + 1):
        if i < steps:
            (value, ok), grads = value_and_grad(raw)
            gnorm = float(optax.tree.norm(grads))
        else:
            value, ok = value_only(raw)
            grads, gnorm = None, float("nan")
        value = float(value)
        finite = bool(ok) and np.isfinite(value) and (grads is None or np.isfinite(gnorm))
        if not finite:
            status = "nonfinite"
            # stacklevel 3: the caller of dmft.optimize
            warnings.warn(f"dmft.optimize: the objective or its gradient is not finite at "
                          f"iteration {i} (objective {value:.4g}); stopped, returning the best "
                          f"finite iterate (iteration {best_i}). Likely causes: an optimiser "
                          "learning rate too large, or a schedule that makes the dynamics blow "
                          "up.", RuntimeWarning, stacklevel=3)
            break
        hist["objective"].append(value)
        hist["grad_norm"].append(gnorm)
        for n, v in par.problem_values(raw).items():
            hist[n].append(np.asarray(v))
        if value < best:
            best, best_raw, best_i = value, raw, i
        if show:
            print(f"[optimize] {i:4d}/{steps}  {name}={value:.6g}  |grad|={gnorm:.3g}  "
                  f"{time.perf_counter() - t0:.1f}s", file=sys.stderr, flush=True)
        if grads is None:
            break
        updates, opt_state = optimizer.update(grads, opt_state, raw)
        raw = optax.apply_updates(raw, updates)
    return hist, best_raw, best_i, status
