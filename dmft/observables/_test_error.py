"""Test error as a function of the order parameters (m, Q), by quadrature (docs/THEORY.md §4).

A fresh sample has (h*, h) jointly Gaussian with E[h*h*ᵀ] = I_k, E[h h*ᵀ] = m, E[h hᵀ] = Q, so

    e_g = ½ E[g*(h*)²] − Σ_j a_j E[g*(h*) σ(h_j)] + ½ Σ_jl a_j a_l E[σ(h_j) σ(h_l)] + Δ/2.

The test error *includes* the label noise Δ/2 (it is E over a fresh labelled sample of ℓ).
Each term is at most a k-dimensional integral: given h*, h_j ~ N(m_j·h*, Q_jj − |m_j|²) and the
inner one-dimensional average σ̄(μ, s) = E_ξ σ(μ + sξ) is in closed form for relu, erf, linear and
quadratic (Gauss–Hermite for tanh); E[σ(h_j)σ(h_l)] is in closed form except for tanh (2-D
Gauss–Hermite). The outer average over h* is a tensor Gauss–Hermite rule.

This module is part of the problem definition: the solver and the simulator both use it, so a
simulation's "exact" test error is computed from its own (m_t, Q_t).
"""

from __future__ import annotations

import math

import equinox as eqx
import jax
import jax.numpy as jnp
import jax.scipy.special as jss
import numpy as np

from ..model import Problem

_GH_1D = 64  # nodes for 1-D smooth inner averages (tanh)


def _gh_rule(n: int):
    x, w = np.polynomial.hermite_e.hermegauss(n)
    return x, w / math.sqrt(2.0 * math.pi)


def _tensor_rule(k: int):
    """Tensor Gauss–Hermite rule for N(0, I_k): nodes (M, k), weights (M,)."""
    n = {1: 160, 2: 100, 3: 40}.get(k, 2 * max(3, int(1e5 ** (1.0 / k)) // 2))  # even: no node at 0
    x, w = _gh_rule(n)
    grids = np.meshgrid(*([x] * k), indexing="ij")
    wgrids = np.meshgrid(*([w] * k), indexing="ij")
    nodes = np.stack([g.ravel() for g in grids], axis=-1)
    weights = np.prod(np.stack([g.ravel() for g in wgrids], axis=-1), axis=-1)
    return nodes, weights


def _phi(x):
    return jnp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)


def smoothed_activation(name: str, mu, s):
    """σ̄(μ, s) = E_ξ[σ(μ + s ξ)], ξ ~ N(0,1)."""
    if name == "relu":
        s_safe = jnp.where(s > 0, s, 1.0)
        x = mu / s_safe
        val = mu * jss.ndtr(x) + s_safe * _phi(x)
        return jnp.where(s > 0, val, jnp.maximum(mu, 0.0))
    if name == "erf":
        return jss.erf(mu / jnp.sqrt(2.0 * (1.0 + s * s)))
    if name == "linear":
        return mu
    if name == "quadratic":
        return mu * mu + s * s
    if name == "tanh":
        x, w = _gh_rule(_GH_1D)
        shape = (1,) * jnp.ndim(mu) + (-1,)
        x, w = jnp.asarray(x).reshape(shape), jnp.asarray(w).reshape(shape)
        return jnp.sum(w * jnp.tanh(mu[..., None] + s[..., None] * x), axis=-1)
    raise ValueError(name)


@jax.custom_jvp
def _relu_pair(safe, cos):
    """safe/(2π) (sin θ + (π − θ) cos θ), θ = arccos(cos): the ReLU pair moment. Its derivative
    in cos is safe (π − θ)/(2π), finite at cos = ±1 (the diagonal j = l of E[σ(h_j)σ(h_l)]),
    where the chain rule through arccos would give inf − inf."""
    th = jnp.arccos(cos)
    return safe / (2.0 * math.pi) * (jnp.sin(th) + (math.pi - th) * cos)


@_relu_pair.defjvp
def _relu_pair_jvp(primals, tangents):
    safe, cos = primals
    dsafe, dcos = tangents
    th = jnp.arccos(cos)
    shape = jnp.sin(th) + (math.pi - th) * cos
    out = safe / (2.0 * math.pi) * shape
    return out, dsafe / (2.0 * math.pi) * shape + safe * (math.pi - th) / (2.0 * math.pi) * dcos


@jax.custom_jvp
def _sqrt0(x):
    """√x with derivative 0 at x = 0 (instead of inf): used where x vanishes identically, the
    conditional variance of a unit given itself on the diagonal of the pair moment."""
    return jnp.sqrt(x)


@_sqrt0.defjvp
def _sqrt0_jvp(primals, tangents):
    (x,), (dx,) = primals, tangents
    r = jnp.sqrt(x)
    return r, jnp.where(x > 0, 0.5 * dx / jnp.where(x > 0, r, 1.0), 0.0)


def pair_moment(name: str, q1, q2, c):
    """E[σ(u)σ(v)] for (u, v) centred Gaussian with Var u = q1, Var v = q2, Cov = c."""
    if name == "relu":
        nrm = jnp.sqrt(jnp.maximum(q1 * q2, 0.0))
        safe = jnp.where(nrm > 0, nrm, 1.0)
        cos = jnp.clip(c / safe, -1.0, 1.0)
        val = _relu_pair(safe, cos)
        return jnp.where(nrm > 0, val, 0.0)
    if name == "erf":
        return (2.0 / math.pi) * jnp.arcsin(
            jnp.clip(c / jnp.sqrt((1.0 + q1) * (1.0 + q2)), -1.0, 1.0)
        )
    if name == "linear":
        return c
    if name == "quadratic":
        return q1 * q2 + 2.0 * c * c
    if name == "tanh":
        x, w = _gh_rule(_GH_1D)
        shape = (1,) * jnp.ndim(c) + (len(x), len(x))
        x1, x2 = (jnp.asarray(v).reshape(shape) for v in np.meshgrid(x, x, indexing="ij"))
        ww = jnp.asarray(np.outer(w, w)).reshape(shape)
        sq1 = jnp.sqrt(jnp.maximum(q1, 0.0))[..., None, None]
        safe = jnp.where(sq1 > 0, sq1, 1.0)
        b = jnp.where(sq1 > 0, c[..., None, None] / safe, 0.0)
        rest = _sqrt0(jnp.maximum(q2[..., None, None] - b * b, 0.0))
        u = sq1 * x1
        v = b * x1 + rest * x2
        return jnp.sum(ww * jnp.tanh(u) * jnp.tanh(v), axis=(-2, -1))
    raise ValueError(name)


# Gaussian nodes of the losses without a closed form (fixed: part of the definition of the
# observable, so the DMFT and the simulator evaluate it with the same nodes).
MC_NODES = 1 << 17
MC_SEED = 20261129
_NODE_CACHE: dict = {}


def _mc_nodes(k: int, p: int) -> np.ndarray:
    """(MC_NODES, k + p + 1) fixed standard normals: [h*, ζ (student), ξ (label noise)]."""
    if (k, p) not in _NODE_CACHE:
        _NODE_CACHE[(k, p)] = np.random.default_rng(MC_SEED).standard_normal(
            (MC_NODES, k + p + 1))
    return _NODE_CACHE[(k, p)]


@jax.custom_jvp
def _psd_sqrt(S):
    """V √max(Λ, 0) Vᵀ of the symmetric S = V Λ Vᵀ (batched over leading axes)."""
    ev, V = jnp.linalg.eigh(S)
    return jnp.einsum("...jr,...r,...lr->...jl", V, jnp.sqrt(jnp.maximum(ev, 0.0)), V)


@_psd_sqrt.defjvp
def _psd_sqrt_jvp(primals, tangents):
    """Daleckii–Krein: d√S = V (F ∘ Vᵀ dS V) Vᵀ, F_ij = 1/(√λ_i + √λ_j) (0 where both vanish):
    finite at degenerate eigenvalues, where the derivative of ``eigh``'s vectors is not."""
    (S,), (dS,) = primals, tangents
    ev, V = jnp.linalg.eigh(S)
    r = jnp.sqrt(jnp.maximum(ev, 0.0))
    out = jnp.einsum("...jr,...r,...lr->...jl", V, r, V)
    den = r[..., :, None] + r[..., None, :]
    F = jnp.where(den > 0, 1.0 / jnp.where(den > 0, den, 1.0), 0.0)
    inner = F * jnp.einsum("...jr,...jl,...ls->...rs", V, dS, V)
    return out, jnp.einsum("...jr,...rs,...ls->...jl", V, inner, V)


def _fresh_sample_average(problem: Problem, m, Q, a, what: str):
    """E over a fresh sample of ℓ(y, f) (``what="loss"``) or of [sign f ≠ y] (``"class"``),
    (h*, h) jointly Gaussian with moments (I, m, Q), on the fixed nodes ``_mc_nodes``:
    h = m h* + (Q − m mᵀ)^{1/2} ζ (symmetric square root, eigenvalues clipped at 0),
    y = g*(h*) + √Δ ξ. The node error (about 0.5/√MC_NODES ≈ 1.4e-3 on a classification error)
    is common to every evaluation."""
    k, p = problem.k, problem.p
    u = jnp.asarray(_mc_nodes(k, p), dtype=m.dtype)
    hs, zeta, xi = u[:, :k], u[:, k:k + p], u[:, k + p]
    S = Q - jnp.einsum("...jk,...lk->...jl", m, m)
    # the symmetric square root V √Λ Vᵀ: continuous in S (V √Λ alone is not: near a degenerate
    # S, e.g. Q⊥ = I at t = 0, rounding rotates V and maps the fixed nodes to another sample)
    root = _psd_sqrt(0.5 * (S + jnp.swapaxes(S, -1, -2)))
    h = jnp.einsum("Mk,...jk->...Mj", hs, m) + jnp.einsum("Mr,...jr->...Mj", zeta, root)
    from ..model import get_activation, network_output

    f = network_output(h, a[..., None, :], get_activation(problem.activation))  # (..., M)
    y = problem.target(hs) + jnp.sqrt(problem.noise) * xi  # (M,)
    y = jnp.broadcast_to(y.astype(f.dtype), f.shape)
    if what == "class":
        return jnp.mean((jnp.sign(f) != y).astype(m.dtype), axis=-1)
    return jnp.mean(problem.loss_fn.fn(y, f), axis=-1)


def _prepare(problem, m, Q, a):
    m = jnp.asarray(m)
    Q = jnp.asarray(Q)
    if a is None:
        a = jnp.asarray(problem.second_layer, dtype=m.dtype)
    a = jnp.broadcast_to(jnp.asarray(a, dtype=m.dtype), m.shape[:-1])
    return m, Q, a


def test_loss(problem: Problem, m, Q, a=None):
    """Test loss E[ℓ(y, f)] on a fresh sample (label noise included): the closed form for the
    square loss, the fixed Gaussian nodes otherwise. Shape (...)."""
    if problem.loss_fn.quadratic:
        return test_error(problem, m, Q, a)
    return _fresh_sample_average(problem, *_prepare(problem, m, Q, a), "loss")


def test_error(problem: Problem, m, Q, a=None):
    """Test error e_g(m, Q): the test loss including label noise Δ/2 (square loss: closed
    form below), or for a classification loss (logistic) the classification error
    P(sign f ≠ y) on the fixed Gaussian nodes.

    Args:
        problem: the problem.
        m: overlaps, shape (..., p, k).
        Q: student Gram, shape (..., p, p).
        a: second layer, shape (..., p) (default: ``problem.second_layer`` for every entry).

    Returns:
        e_g with shape (...).
    """
    m, Q, a = _prepare(problem, m, Q, a)
    lo = problem.loss_fn
    if lo.classification:
        return _fresh_sample_average(problem, m, Q, a, "class")
    if not lo.quadratic:
        return _fresh_sample_average(problem, m, Q, a, "loss")
    act = problem.activation
    nodes, weights = _tensor_rule(problem.k)
    nodes = jnp.asarray(nodes, dtype=m.dtype)
    weights = jnp.asarray(weights, dtype=m.dtype)
    gstar = problem.target(nodes)  # (M,)
    e_gg = jnp.sum(weights * gstar * gstar)

    # cross term: h_j | h* ~ N(m_j·h*, Q_jj - |m_j|^2)
    mu = jnp.einsum("...jk,Mk->...Mj", m, nodes)  # (..., M, p)
    s2 = jnp.diagonal(Q, axis1=-2, axis2=-1) - jnp.sum(m * m, axis=-1)  # (..., p)
    s = jnp.sqrt(jnp.maximum(s2, 0.0))[..., None, :]
    sbar = smoothed_activation(act, mu, jnp.broadcast_to(s, mu.shape))  # (..., M, p)
    cross = jnp.einsum("M,M,...Mj,...j->...", weights, gstar, sbar, a)

    qd = jnp.diagonal(Q, axis1=-2, axis2=-1)
    pair = pair_moment(act, qd[..., :, None], qd[..., None, :], Q)  # (..., p, p)
    ff = jnp.einsum("...j,...jl,...l->...", a, pair, a)
    return 0.5 * e_gg - cross + 0.5 * ff + 0.5 * problem.noise


@eqx.filter_jit
def _test_error_map(problem, m, Q, a, what):
    fn = test_error if what == "error" else test_loss
    with jax.default_matmul_precision("highest"):  # GPUs: no TF32-class float32 products
        return jax.lax.map(lambda x: fn(problem, *x), (m, Q, a))


def test_error_map(problem: Problem, m, Q, a, what: str = "error"):
    """e_g (``what="error"``) or the test loss (``"loss"``) for a stack of order parameters
    m (N, p, k), Q (N, p, p), a (N, p), one entry at a time (``lax.map``: the quadrature's
    working array grows with nodes × p², so mapping bounds the memory). ``problem`` may hold
    traced numbers (a new Δ does not recompile); returns a numpy array (N,). Shared by the
    solver and the simulator."""
    m = jnp.asarray(m)
    return np.asarray(_test_error_map(problem, m, jnp.asarray(Q, m.dtype),
                                      jnp.asarray(a, m.dtype), what))
