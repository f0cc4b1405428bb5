"""The DMFT as a pure, differentiable function of the problem's numbers (docs/THEORY.md §11).

``f = solve_fn(problem, samples, seed=...)`` returns ``f(numbers) -> dict`` of replica-mean
observables at every step, with ``numbers = dmft.numbers(problem)`` (a :class:`~dmft.model.Numbers`
pytree). ``f`` is built from the solver's own step (``_step.make_step``), draws and initial state,
so the same seed gives the values of :func:`dmft.solve`; it differs from the sweep of ``solve`` in
how steps are looped over: a fixed-trip ``lax.scan`` over t = 0..T instead of a ``while_loop``
that stops at the first non-finite step, so that reverse mode (``jax.grad``, ``jax.jacrev``)
works. Each step's body is ``jax.checkpoint``-ed: the backward pass keeps the carried state of
every step (the g history and the kernels, :func:`memory_estimate` with ``mode="reverse"``) and
recomputes a step's intermediates from it, rather than keeping every intermediate of every step.

The random draws do not depend on the numbers: at a fixed seed, ``f`` is a deterministic
function of them, smooth for smooth activations (finite differences of the same seed agree with
its derivatives), piecewise smooth for ReLU (docs/THEORY.md §11.2).

Non-finite values: ``f`` raises (``equinox.branched_error_if``, inside ``jit`` and every
transformation) with a message naming the first non-finite step; called on concrete numbers it
raises :class:`dmft.DivergenceError`.
"""

from __future__ import annotations

import dataclasses
import functools
import math

import equinox as eqx
import jax
import jax.numpy as jnp
import numpy as np

from .._errors import DivergenceError, DMFTInputError
from .._precision import full_precision
from .._validate import check_real
from ..model import Numbers, Problem, check_problem
from ..observables import test_error as _test_error
from ..observables import test_loss as _test_loss
from ._memory import check_memory
from ._solve import replica_keys, validate
from ._state import draw_replicas, init_state
from ._step import iterate_view, make_step

# Fields of the sweep state that no step writes: loop constants of the scan, kept once (not per
# step) by the backward pass.
CONSTANT_FIELDS = ("z", "y", "xf", "w", "u", "G", "LGinv")

NONFINITE_CAUSES = ("Likely causes: a learning rate too large for this problem (the dynamics "
                    "blew up), too few Monte Carlo samples, or numbers outside their range "
                    "(e.g. a negative learning rate or noise variance).")


def number_fields() -> tuple[str, ...]:
    """The names of the numeric (traced) fields of :class:`~dmft.model.Numbers`, in order."""
    return tuple(f.name for f in dataclasses.fields(Numbers)
                 if not f.metadata.get("static", False))


def numbers(problem: Problem, dtype="float64") -> Numbers:
    """The pytree of ``problem``'s numeric fields (lr, alpha, ridge, noise, m0, qperp0, second
    layer, lr_a, ...) as arrays of ``dtype``: the input of the function of :func:`solve_fn`.

    ``lr`` and ``lr_a`` (and every other per-step field) have T + 1 entries, the last 0 and
    unused. ``jax.tree.map`` and ``eqx.tree_at`` work on it; its structure (p, T, activation,
    target, loss, schedule) is static."""
    check_problem(problem)
    try:
        name = np.dtype(dtype).name
    except TypeError:
        raise DMFTInputError(
            f"`dtype` must be one of ['float32', 'float64']; got dtype={dtype!r}") from None
    if name not in ("float32", "float64"):
        raise DMFTInputError(f"`dtype` must be one of ['float32', 'float64']; got dtype={name!r}")
    return problem.numbers(np.dtype(name))


_STATIC = ("p", "steps", "activation", "target", "loss", "schedule")


def check_numbers(nb, template: Numbers) -> Numbers:
    """``nb`` as the numbers of ``template``'s structure, every leaf in the template's dtype
    (a DMFTInputError naming the field when its structure or a shape differs)."""
    if not isinstance(nb, Numbers):
        raise DMFTInputError(
            f"`numbers` must be a dmft.model.Numbers (from dmft.numbers(problem)); got "
            f"{type(nb).__name__}")
    for name in _STATIC:
        if getattr(nb, name) != getattr(template, name):
            raise DMFTInputError(
                f"`numbers.{name}` must be {getattr(template, name)!r}, the structure this "
                f"function was built for; got {getattr(nb, name)!r} (a new structure needs a new "
                "dmft.solve_fn)")
    out = {}
    for name in number_fields():
        v, ref = getattr(nb, name), getattr(template, name)
        if np.shape(v) != np.shape(ref):
            raise DMFTInputError(
                f"Argument `numbers.{name}` must have shape {np.shape(ref)}, but has shape "
                f"numbers.{name}.shape={np.shape(v)}")
        out[name] = jnp.asarray(v).astype(ref.dtype)
    return dataclasses.replace(nb, **out)


@functools.partial(jax.custom_jvp, nondiff_argnums=(1,))
def _kink_step(h, width):
    """σ'(h) = [h > 0] of ReLU, whose derivative is a Gaussian of standard deviation ``width``
    in place of the Dirac mass δ(h) that automatic differentiation drops (docs/THEORY.md §11)."""
    return (h > 0).astype(h.dtype)


@_kink_step.defjvp
def _kink_step_jvp(width, primals, tangents):
    (h,), (dh,) = primals, tangents
    dens = jnp.exp(-0.5 * (h / width) ** 2) / (math.sqrt(2.0 * math.pi) * width)
    return _kink_step(h, width), dens * dh


def differentiated_activation(act, kink_width):
    """``act``, or for a kink width ReLU whose σ' has the smoothed Dirac derivative (the same
    values: the forward pass is unchanged)."""
    if kink_width is None:
        return act
    return dataclasses.replace(act, deriv=lambda h: _kink_step(h, kink_width))


def _observables(st, nb: Numbers, keys, remat: bool, kink_width=None):
    """(replica-mean observables, per-step "every output finite" flags)."""
    act = differentiated_activation(nb.act, kink_width)
    step_r = jax.vmap(make_step(st, act, nb.loss), in_axes=(None, 0, None))
    draws = draw_replicas(st, keys)
    state = jax.vmap(lambda dr: init_state(st, nb, dr))(draws)
    names = [f.name for f in dataclasses.fields(state)]
    carried = {n: getattr(state, n) for n in names if n not in CONSTANT_FIELDS}

    def body(carry, t):
        state_t, o = step_r(nb, dataclasses.replace(state, **carry), t)
        return {n: getattr(state_t, n) for n in carry}, (o["train_loss"], o["finite"])

    if remat:
        body = jax.checkpoint(body, prevent_cse=False)
    final, (train_loss, finite) = jax.lax.scan(body, carried, jnp.arange(st.T1))
    if nb.nesterov:  # the iterates' order parameters, as dmft.solve reports them
        final = iterate_view(nb, {n: final[n] for n in ("m", "Qp", "R", "a")})
    m, a = final["m"], final["a"]  # (R, T1, p, k), (R, T1, p)
    idx = jnp.arange(st.T1)
    Q = jnp.einsum("rtqk,rtvk->rtqv", m, m) + final["Qp"][:, idx, idx]
    R, T1 = m.shape[:2]

    def flat(x):
        return x.reshape((R * T1,) + x.shape[2:])

    def per_replica(fn):
        vals = jax.lax.map(lambda x: fn(nb, *x), (flat(m), flat(Q), flat(a)))
        return vals.reshape(R, T1)

    eg = per_replica(_test_error)
    out = {
        "m": jnp.mean(m, axis=0),
        "Q": jnp.mean(Q, axis=0),
        "a": jnp.mean(a, axis=0),
        "test_error": jnp.mean(eg, axis=0),
        "train_loss": jnp.mean(train_loss, axis=1),
    }
    if nb.loss_fn.classification:
        out["test_loss"] = jnp.mean(per_replica(_test_loss), axis=0)
    out["m_norm"] = jnp.sqrt(jnp.sum(out["m"] ** 2, axis=(-2, -1)))
    ok = jnp.all(finite, axis=1)
    for v in out.values():
        ok = ok & jnp.all(jnp.isfinite(v.reshape(T1, -1)), axis=1)
    return out, ok


def _messages(T1: int):
    return [f"dmft.solve_fn: run diverged at step {t}: DMFT kernels/overlaps are not finite or "
            f"overflowed (step {t} is the first such step). {NONFINITE_CAUSES}"
            for t in range(T1)]


@eqx.filter_jit
def _run_checked(st, nb, keys, remat, kink_width):
    with full_precision():
        out, ok = _observables(st, nb, keys, remat, kink_width)
    first_bad = jnp.argmin(ok)  # the first False (0 when all are True: unused then)
    return eqx.branched_error_if(out, ~jnp.all(ok), first_bad, _messages(st.T1))


@eqx.filter_jit
def _run_flags(st, nb, keys, remat, kink_width):
    with full_precision():
        return _observables(st, nb, keys, remat, kink_width)


def check_kink_width(problem, kink_width):
    """``kink_width`` as a float (or None); refused for a smooth activation, which has no kink."""
    if kink_width is None:
        return None
    if problem.act.smooth:
        raise DMFTInputError(
            f"`kink_width` applies to a non-smooth activation (relu) only; activation "
            f"{problem.activation!r} is smooth; got kink_width={kink_width!r}")
    return check_real("kink_width", kink_width, low=0.0, low_open=True)


def _is_traced(tree) -> bool:
    return any(isinstance(x, jax.core.Tracer) for x in jax.tree.leaves(tree))


def solve_fn(problem: Problem, samples: int = 200_000, *, seed: int = 0, replicas: int = 16,
             dtype="float64", response: str = "stein", chunk_size: int | None = None,
             checkpoint: bool = True, kink_width: float | None = None):
    """The DMFT of ``problem``'s structure as a pure function of its numbers.

    Args:
        problem: the :class:`~dmft.Problem`; its structure (target, activation, p, T,
            schedule, loss) is fixed, its numbers are the argument of the returned function.
        samples, seed, replicas, dtype, response, chunk_size: as for :func:`dmft.solve`; the
            same seed gives the values of ``dmft.solve`` (to ~1e-15 in float64; for float32
            the test error is evaluated in the kernel dtype, where ``solve`` rounds it to
            float32).
        checkpoint: ``jax.checkpoint`` each step (default): the backward pass of reverse mode
            keeps the carried state of every step and recomputes the rest
            (:func:`memory_estimate` ``mode="reverse"``). ``False`` keeps every intermediate.
        kink_width: ReLU only. ``None`` (default): derivatives are those of the finite-sample
            function, which is piecewise smooth (a sample whose field crosses 0 makes it jump
            by O(1/N)), so they miss the Dirac term E[ℓ'(f) a_j δ(h_j) ∂h_j/∂θ] of the
            derivative of the DMFT. A width w > 0 adds that term with δ replaced by a
            Gaussian of standard deviation w (bias O(w²), noise O(1/√(N w))): a consistent
            estimate of the DMFT's derivative, no longer the derivative of ``f``'s values
            (which are unchanged). See docs/THEORY.md §11.

    Returns:
        ``f(numbers) -> dict`` with ``numbers`` a :class:`~dmft.model.Numbers` of this structure
        (``dmft.numbers(problem)``). The dict holds replica means at every step t = 0..T:
        ``m`` (T+1, p, k), ``Q`` (T+1, p, p), ``a`` (T+1, p), ``test_error`` (T+1,),
        ``train_loss`` (T+1,), ``m_norm`` (T+1,) = ‖mean m_t‖ (Frobenius), and ``test_loss``
        for a classification loss. ``jax.grad``, ``jax.jvp``, ``jax.jacfwd``, ``jax.jacrev``,
        ``jax.vmap`` and ``jax.jit`` apply. ``f.problem``, ``f.numbers`` (the problem's own
        numbers) and ``f.settings`` are attributes.

    Raises:
        DMFTInputError: invalid arguments (here), or numbers of another structure (in ``f``).
        DivergenceError: ``f`` called on concrete numbers gave a non-finite value; under a
            transformation or ``jit`` the same message comes as an ``EquinoxRuntimeError``
            (under ``jax.jit`` on the CPU wrapped in a ``jax.errors.JaxRuntimeError``).
    """
    st = validate(problem, samples, seed, replicas, chunk_size, response, dtype)
    kink_width = check_kink_width(problem, kink_width)
    check_memory(problem, samples, replicas, chunk_size, response, st.dtype)
    keys = replica_keys(seed, replicas)
    template = problem.numbers(st.kdtype)
    remat = bool(checkpoint)

    def f(nb):
        nb = check_numbers(nb, template)
        if _is_traced(nb):
            return _run_checked(st, nb, keys, remat, kink_width)
        out, ok = _run_flags(st, nb, keys, remat, kink_width)
        ok = np.asarray(ok)
        if not ok.all():
            step = int(np.argmin(ok))
            raise DivergenceError(step, "DMFT kernels/overlaps (dmft.solve_fn)",
                                  causes=NONFINITE_CAUSES)
        return out

    f.problem = problem
    f.numbers = template
    f.settings = dict(samples=samples, seed=seed, replicas=replicas, dtype=st.dtype_name,
                      response=response, chunk_size=chunk_size, checkpoint=remat,
                      kink_width=kink_width)
    f.structure = st
    return f


def unchecked_fn(f):
    """``g(numbers) -> (observables, ok)`` for a caller that handles non-finite values itself
    (:func:`dmft.optimize`): the function of ``f = solve_fn(...)`` (same structure, seed,
    response and kink width) that never raises, with ``ok`` the per-step "every output finite"
    flags. ``g`` is not jitted: the caller traces it (``jax.jit``, ``jax.value_and_grad``)."""
    st, settings = f.structure, f.settings
    keys = replica_keys(settings["seed"], settings["replicas"])

    def g(nb):
        with full_precision():
            return _observables(st, nb, keys, settings["checkpoint"], settings["kink_width"])

    return g
