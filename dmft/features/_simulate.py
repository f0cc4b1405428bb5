"""Wide two-layer networks after giant gradient steps: feature spectra and the ridge readout.

A different regime from the DMFT of ``dmft.solve`` (docs/THEORY.md §7): the first layer is wide,
p = κd units, trained by a few large full-batch GD steps on n₀ = α₀d^ℓ samples
(ℓ = ``samples_exponent``, default 1; Ba et al. 2022, arXiv:2205.01445); the features are then
frozen and a ridge readout is fitted on n₁ = α₁d fresh samples. For every seed we compute, for
three feature maps on the *same* readout and test data,

- ``rf``: the random features at initialization, σ(W₀x);
- ``step``: the features after the steps, σ(W_T x);
- ``spiked``: the spiked random-feature equivalent (Dandi et al. 2024): W₀ + the top
  ``spike_rank`` singular components of the update W_T − W₀ + an independent isotropic Gaussian
  matrix carrying the rest of the update's norm;

the eigenvalues of FᵀF/n₁, the outliers (count above the bulk edge, positions, overlap of their
eigenvectors with the target directions) and the train and test errors of the ridge readout for
every λ of a grid.
After every step t the learned subspace is recorded: ``step_overlap`` (T, k), ‖P_t e_i‖ with P_t
the projector onto the top N_TOP right singular vectors of W_t − W₀, and ``step_update_norm``
(T,), ‖W_t − W₀‖_F/√p.

Model. x ~ N(0, I_d); target y = g*(z) + √Δ ξ with z = (x₁, …, x_k) (W* = √d·[e₁ … e_k]; the
law of W₀ is rotation invariant, so this is no loss of generality); W₀ rows uniform on the unit
sphere; second layer a_j = ±1/√p (random signs, fixed; or N(0, 1)/√p with
``second_layer="gaussian"``); network f(x) = (1/√p) Σ_j a_j σ(w_j·x);
loss L = (1/2n₀) Σ_ν (y_ν − f(x_ν))²; step W ← W − η √p ∇_W L, i.e. row j moves by
η a_j (1/n₀) Σ_ν (y_ν − f_ν) σ'(w_j·x_ν) x_ν. ``lr_scaling="sqrt_p"`` sets η = lr·√p (the
"giant step", each row moves by Θ(1)); ``"const"`` sets η = lr (a rank-one spike of operator
norm Θ(1)). The readout uses the centred features φ_j(x) = σ(w_j·x) − E σ(‖w_j‖G) and
â = (FᵀF/n₁ + λI)⁻¹Fᵀy/n₁; errors are E(y − f)²/2 (label noise included).

Keys: ``ks = fold_in(fold_in(key(seed), STREAM_FEATURES), s)`` for seed index s; from it
W₀ (0), signs of a (1), step batch b (fold_in(fold_in(ks, 2), b), b = t for ``fresh``, 0 for
``reuse``), readout data (3), test data (4), the isotropic part of the spiked model (5).
"""

from __future__ import annotations

import functools
import math
import time

import jax
import jax.numpy as jnp
import numpy as np

from .._errors import DivergenceError, DMFTInputError
from .._rng import STREAM_FEATURES, stream_key
from .._validate import check_int, check_x64
from ..model import get_activation, get_target
from ._config import MAPS, N_TOP, FeaturesConfig, FeaturesResult

KEY_SCHEME = (
    "dmft-features-keys-v2: ks = fold_in(fold_in(key(seed), 5), seed index); W0 fold_in(ks,0), "
    "a fold_in(ks,1), step batch b fold_in(fold_in(ks,2),b), readout fold_in(ks,3), test "
    "fold_in(ks,4), spiked bulk fold_in(ks,5); in a batch: x fold_in(.,0), noise fold_in(.,1)"
)
# a result this large is treated as overflowed: its square (in the standard error over seeds)
# would overflow float64
OVERFLOW = 1e150


def wasserstein1(a, b) -> np.ndarray:
    """W1 distance between the empirical distributions of equal-size samples (last axis)."""
    a = np.sort(np.asarray(a, dtype=np.float64), axis=-1)
    b = np.sort(np.asarray(b, dtype=np.float64), axis=-1)
    if a.shape != b.shape:
        raise DMFTInputError(f"`a` and `b` must have the same shape; got {a.shape}, {b.shape}")
    return np.mean(np.abs(a - b), axis=-1)


# --------------------------------------------------------------------------------------------
# Kernels (pure, jitted per seed)
# --------------------------------------------------------------------------------------------

_NODES, _WEIGHTS = None, None


def _normal_rule():
    global _NODES, _WEIGHTS
    if _NODES is None:
        from ._rf_theory import _normal_rule as rule

        _NODES, _WEIGHTS = rule(100)
    return _NODES, _WEIGHTS


def _draw_batch(key, n, d, k, tgt, noise):
    x = jax.random.normal(jax.random.fold_in(key, 0), (n, d))
    y = tgt.fn(x[:, :k]) + jnp.sqrt(noise) * jax.random.normal(jax.random.fold_in(key, 1), (n,))
    return x, y


def _centred(act, W, x):
    """σ(x Wᵀ) − E σ(‖w_j‖ G), the centring done by quadrature."""
    nodes, weights = _normal_rule()
    norms = jnp.sqrt(jnp.sum(W * W, axis=1))
    mean = act.fn(norms[:, None] * jnp.asarray(nodes)[None, :]) @ jnp.asarray(weights)
    return act.fn(x @ W.T) - mean[None, :]


def _readout(act, W, x1, y1, x2, y2, ridges, k):
    """Spectrum of FᵀF/n₁, its top eigenvectors' overlaps and the ridge errors for each λ."""
    n1, p = x1.shape[0], W.shape[0]
    F = _centred(act, W, x1)
    Ft = _centred(act, W, x2)
    if p <= n1:
        e, V = jnp.linalg.eigh(F.T @ F / n1)
        coef = (V.T @ (F.T @ y1 / n1))[:, None] / (e[:, None] + ridges[None, :])
        A = V @ coef  # (p, L)
        U_top = V[:, -N_TOP:]
        eig = e
    else:
        e, U = jnp.linalg.eigh(F @ F.T / n1)
        coef = (U.T @ y1)[:, None] / (e[:, None] + ridges[None, :]) / n1
        A = F.T @ (U @ coef)
        U_top = F.T @ U[:, -N_TOP:] / jnp.sqrt(jnp.maximum(e[-N_TOP:], 1e-300) * n1)[None, :]
        eig = jnp.concatenate([jnp.zeros(p - n1, e.dtype), e])
    train = 0.5 * jnp.mean((y1[:, None] - F @ A) ** 2, axis=0)
    test = 0.5 * jnp.mean((y2[:, None] - Ft @ A) ** 2, axis=0)
    dirs = W.T @ U_top  # (d, N_TOP): input-space directions of the top eigenvectors
    overlap = jnp.abs(dirs[:k, :]) / jnp.sqrt(jnp.sum(dirs * dirs, axis=0))[None, :]
    return eig, eig[-N_TOP:], overlap.T, train, test


def network(act, W, a, x):
    """f(x) = (1/√p) Σ_j a_j σ(w_j·x) for the rows of ``x``."""
    return act.fn(x @ W.T) @ a / math.sqrt(W.shape[0])


def gd_step(act, W, a, x, y, eta):
    """One full-batch step W ← W − η √p ∇_W L, L = (1/2n₀) Σ_ν (y_ν − f(x_ν))².

    Row j moves by η a_j (1/n₀) Σ_ν (y_ν − f_ν) σ'(w_j·x_ν) x_ν (the √p of the step cancels the
    1/√p of the network). ``act`` is a :class:`dmft.problem.Activation`.
    """
    h = x @ W.T
    f = act.fn(h) @ a / math.sqrt(W.shape[0])
    g = (y - f)[:, None] * act.deriv(h) * a[None, :]  # (n0, p)
    return W + eta * (g.T @ x) / x.shape[0]


@functools.partial(jax.jit, static_argnums=(0,))
def _one_seed(static, key, eta, ridges, noise):
    (tname, aname, d, p, k, n0, n1, nt, steps, batch, rank, second_layer) = static
    tgt, act = get_target(tname), get_activation(aname)
    W0 = jax.random.normal(jax.random.fold_in(key, 0), (p, d))
    W0 = W0 / jnp.sqrt(jnp.sum(W0 * W0, axis=1, keepdims=True))
    if second_layer == "sign":
        a = jnp.where(jax.random.bernoulli(jax.random.fold_in(key, 1), 0.5, (p,)), 1.0, -1.0)
    else:
        a = jax.random.normal(jax.random.fold_in(key, 1), (p,))
    a = a / math.sqrt(p)
    kstep = jax.random.fold_in(key, 2)
    W = W0
    finite = []  # are the weights finite after each step (the driver names the first bad one)
    overlaps, norms = [], []  # the learned subspace after each step
    for t in range(steps):  # steps is small and static: unrolled
        x, y = _draw_batch(jax.random.fold_in(kstep, t if batch == "fresh" else 0), n0, d, k,
                           tgt, noise)
        W = gd_step(act, W, a, x, y, eta)
        finite.append(jnp.all(jnp.abs(W) < OVERFLOW))  # False for inf and NaN too
        norms.append(jnp.sqrt(jnp.sum((W - W0) ** 2) / p))
        if t < steps - 1:  # the last step's SVD is the one of the spiked model below
            overlaps.append(_subspace_overlap(jnp.linalg.svd(W - W0, full_matrices=False)[2], k))
    x1, y1 = _draw_batch(jax.random.fold_in(key, 3), n1, d, k, tgt, noise)
    x2, y2 = _draw_batch(jax.random.fold_in(key, 4), nt, d, k, tgt, noise)
    out = {}
    r = _readout(act, W0, x1, y1, x2, y2, ridges, k)
    out.update(_named("rf", r))
    if steps == 0:
        return out
    out[_FINITE_W] = jnp.stack(finite)
    r = _readout(act, W, x1, y1, x2, y2, ridges, k)
    out.update(_named("step", r))
    delta = W - W0
    Us, s, Vts = jnp.linalg.svd(delta, full_matrices=False)
    spike = (Us[:, :rank] * s[None, :rank]) @ Vts[:rank, :]
    rest = W - spike  # W₀ + the rest of the update
    q = jnp.maximum(jnp.mean(jnp.sum(rest * rest, axis=1)) - 1.0, 0.0)  # extra row norm²
    Z = jax.random.normal(jax.random.fold_in(key, 5), (p, d)) * jnp.sqrt(q / d)
    bulk = W0 + Z
    r = _readout(act, bulk + spike, x1, y1, x2, y2, ridges, k)
    out.update(_named("spiked", r))
    Fb = _centred(act, bulk, x1)
    gram = Fb.T @ Fb / n1 if p <= n1 else Fb @ Fb.T / n1
    out["bulk_edge"] = jnp.linalg.eigvalsh(gram)[-1]
    out["update_singular_values"] = s[: N_TOP + rank]
    out["update_rest_norm2"] = q
    out["step_overlap"] = jnp.stack(overlaps + [_subspace_overlap(Vts, k)])
    out["step_update_norm"] = jnp.stack(norms)
    return out


def _subspace_overlap(Vt, k):
    """‖P e_i‖ for i < k, P the projector onto the span of the top N_TOP right singular vectors
    (rows of ``Vt``, in input space) of an update W_t − W₀."""
    top = Vt[:N_TOP, :k]
    return jnp.sqrt(jnp.sum(top * top, axis=0))


_FINITE_W = "_weights_finite"  # per-step check, removed by the driver (not an output)


def _check_finite(out: dict, c: FeaturesConfig, s: int) -> None:
    """Stop at the first non-finite (or overflowed: beyond OVERFLOW) result of seed index ``s``:
    the weights after a step, then the spectra and readout errors of each map (a
    DivergenceError naming the step)."""
    causes = (f"Likely causes: a learning rate too large (lr={c.lr:g}, η={c.eta:.4g} with "
              f"lr_scaling={c.lr_scaling!r}) or huge label noise (noise={c.noise:g})")
    if _FINITE_W in out:
        ok = np.asarray(out.pop(_FINITE_W), dtype=bool)
        if not ok.all():
            t = int(np.argmin(ok))
            raise DivergenceError(
                t + 1, f"the first-layer weight matrix after GD step {t + 1} of {c.steps} "
                f"(seed index {s})", causes=causes, saved="")
    for name, val in out.items():
        if not np.all(np.abs(val) < OVERFLOW):
            if "/" in name:
                m, kind = name.split("/", 1)
                where = f"{_QUANTITY.get(kind, kind)} of the {m!r} features"
            else:
                where = _QUANTITY.get(name, name)
            raise DivergenceError(
                c.steps, f"the {where} after {c.steps} GD step(s) (seed index {s})",
                causes=causes, saved="")


_QUANTITY = {"eigenvalues": "spectrum", "top": "top-eigenvalue set",
             "overlap": "eigenvector-overlap set", "train_error": "readout train error",
             "test_error": "readout test error",
             "bulk_edge": "bulk edge (spike-free part of the spiked model)",
             "update_singular_values": "singular-value set of the update W_T - W_0",
             "update_rest_norm2": "norm of the update beyond its spike",
             "step_overlap": "overlap of the learned subspace with the target directions",
             "step_update_norm": "norm of the update W_t - W_0"}


def _named(name, r):
    eig, top, overlap, train, test = r
    return {f"{name}/eigenvalues": eig, f"{name}/top": top, f"{name}/overlap": overlap,
            f"{name}/train_error": train, f"{name}/test_error": test}


# --------------------------------------------------------------------------------------------
# Driver
# --------------------------------------------------------------------------------------------


def simulate_features(config: FeaturesConfig | None = None, *, seeds: int = 8, seed: int = 0,
                      progress=None, **kwargs) -> FeaturesResult:
    """Simulate the three feature maps over ``seeds`` independent seeds.

    Args:
        config: a :class:`FeaturesConfig`; or pass its fields as keyword arguments
            (``target``, ``activation``, ``d``, ``kappa``, ``alpha0``, ``samples_exponent``,
            ``alpha1``, ``lr``,
            ``lr_scaling``, ``steps``, ``batch``, ``ridges``, ``noise``, ``spike_rank``,
            ``n_test``, ``outlier_margin``).
        seeds: number of independent seeds, at least 2 (the standard errors need two).
        seed: the user seed all keys derive from.
        progress: tqdm bar over seeds (None: only on a TTY; False: off).

    Returns:
        :class:`FeaturesResult` (per-seed arrays; ``estimate(name)`` gives mean ± SE).

    Raises:
        DivergenceError: a seed gave non-finite weights after a step (its ``step``), or a
            non-finite spectrum or readout error; nothing is returned then.
    """
    if config is None:
        config = FeaturesConfig(**kwargs)
    elif kwargs:
        raise DMFTInputError(f"pass either `config` or keyword fields, not both; got {kwargs}")
    if not isinstance(config, FeaturesConfig):
        raise DMFTInputError(f"`config` must be a FeaturesConfig; got {type(config).__name__}")
    if isinstance(seeds, (int, np.integer)) and not isinstance(seeds, bool) and seeds == 1:
        raise DMFTInputError(
            "`seeds` must be >= 2: the standard errors over seeds need at least two seeds; "
            "got seeds=1")
    seeds = check_int("seeds", seeds, low=2, high=100_000)
    seed = check_int("seed", seed, low=0, high=2**63 - 1)
    check_x64("float64")
    c = config
    k = get_target(c.target).k
    static = (c.target, c.activation, c.d, c.p, k, c.n0, c.n1, c.n_test_eff, c.steps, c.batch,
              c.spike_rank, c.second_layer)
    root = stream_key(seed, STREAM_FEATURES)
    ridges = jnp.asarray(c.ridges, dtype=jnp.float64)
    eta = jnp.asarray(c.eta, dtype=jnp.float64)
    noise = jnp.asarray(c.noise, dtype=jnp.float64)
    rows = []
    t0 = time.perf_counter()
    it = range(seeds)
    if progress is not False:
        from tqdm.auto import tqdm

        it = tqdm(it, desc=f"features d={c.d}", disable=None if progress is None else False,
                  leave=False)
    for s in it:
        out = jax.tree.map(np.asarray,
                           _one_seed(static, jax.random.fold_in(root, s), eta, ridges, noise))
        _check_finite(out, c, s)
        rows.append(out)
    per_seed = {name: np.stack([r[name] for r in rows]) for name in rows[0]}
    if c.steps > 0:
        edge = per_seed["bulk_edge"] * (1.0 + c.outlier_margin)
        for m in MAPS:
            per_seed[f"{m}/n_outliers"] = np.sum(
                per_seed[f"{m}/eigenvalues"] > edge[:, None], axis=1).astype(np.float64)
        per_seed["w1_step_spiked"] = wasserstein1(per_seed["step/eigenvalues"],
                                                  per_seed["spiked/eigenvalues"])
        per_seed["w1_step_rf"] = wasserstein1(per_seed["step/eigenvalues"],
                                              per_seed["rf/eigenvalues"])
    settings = {"seeds": seeds, "seed": seed, "key_scheme": KEY_SCHEME,
                "wall_time_s": time.perf_counter() - t0, "dtype": "float64"}
    maps = MAPS if c.steps > 0 else ("rf",)
    return FeaturesResult(config=c, per_seed=per_seed, maps=maps, settings=settings,
                          theory=rf_closed_form(c))


def rf_closed_form(config: FeaturesConfig) -> dict | None:
    """The d → ∞ test and train error of the random features at init for ``config``'s ridges
    (:func:`dmft.rf_theory.rf_test_error`), or None where the closed form does not apply
    (a linear activation, or a target with more than 3 directions)."""
    from ._rf_theory import rf_test_error

    c = config
    try:
        th = rf_test_error(c.kappa, c.alpha1, np.asarray(c.ridges), c.activation, c.target,
                           c.noise)
    except DMFTInputError:
        return None
    return {"test_error": np.asarray(th["test_error"]),
            "train_error": np.asarray(th["train_error"])}
