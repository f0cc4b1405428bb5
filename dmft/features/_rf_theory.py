"""Random-feature ridge regression at initialization: the Gaussian-equivalent closed form.

The model (docs/THEORY.md, "Wide networks after giant steps"): inputs x ~ N(0, I_d), p = κd
features φ_j(x) = σ(w_j·x) − μ0 with rows ‖w_j‖ = 1 drawn uniformly on the sphere, a ridge
readout â = (FᵀF/n₁ + λ I)⁻¹ Fᵀy/n₁ on n₁ = α₁d fresh samples, prediction f(x) = âᵀφ(x).

Gaussian equivalence replaces φ by μ1 W x + μ* ξ (ξ ~ N(0, I_p) independent), with the
Hermite coefficients μ0 = E σ(G), μ1 = E[G σ(G)], μ*² = E σ(G)² − μ0² − μ1². The target
y = g*(z) + √Δ ξ', z = W* x/√d, enters only through c1 = E[z g*(z)] (its linear part, ‖c1‖² = F²)
and τ² = E[g*²] − F² + Δ (everything the features cannot see acts as noise). With
Σ = μ1² WWᵀ + μ*² I and b = μ1 W β (β = W*ᵀc1/√d), the ridge deterministic equivalent is

    λ = ρ (1 − (1/n₁) Tr Σ(Σ + ρ)⁻¹),   df₂ = (1/n₁) Tr Σ²(Σ + ρ)⁻²,
    E(y − f)² = [σ_eff² + ρ² bᵀ Σ⁻¹(Σ + ρ)⁻² b] / (1 − df₂),   σ_eff² = E y² − bᵀΣ⁻¹b,

and the traces become integrals over the Marchenko–Pastur law of WWᵀ (ratio κ) as d → ∞. This
is the Mei–Montanari (arXiv:1908.05355) limit written in our normalisation. Only numpy is used.
"""

from __future__ import annotations

import math

import numpy as np

from .._errors import DMFTInputError
from .._rmt import marchenko_pastur_rule
from .._validate import check_real

# Gauss–Legendre rule on [-L, 0] ∪ [0, L] for E f(G), G ~ N(0,1): exact to ~1e-15 for the
# activations of dmft.problem, including the ReLU kink at 0 (a node boundary).
_GL_HALF = 200
_GL_L = 12.0


def _normal_rule(n_half: int = _GL_HALF, L: float = _GL_L):
    x, w = np.polynomial.legendre.leggauss(n_half)
    xs = np.concatenate([(x - 1.0) * L / 2, (x + 1.0) * L / 2])
    ws = np.concatenate([w, w]) * L / 2 * np.exp(-0.5 * xs**2) / math.sqrt(2 * math.pi)
    return xs, ws


def hermite_coefficients(activation, scale: float = 1.0) -> dict:
    """μ0, μ1, μ2, μ*² of σ(scale·G) with G ~ N(0, 1) (quadrature; no scipy).

    μ2 = E[He2(G) σ]/√2 is the normalised second coefficient (reported for the docs and the
    after-step discussion; the closed form needs μ0, μ1, μ*).
    """
    from ..model import get_activation

    act = get_activation(activation)
    xs, ws = _normal_rule()
    s = np.asarray(act.fn(scale * xs), dtype=np.float64)
    mu0 = float(ws @ s)
    mu1 = float(ws @ (xs * s))
    mu2 = float(ws @ ((xs**2 - 1) * s)) / math.sqrt(2.0)
    second = float(ws @ (s * s))
    return {"mu0": mu0, "mu1": mu1, "mu2": mu2, "mustar2": max(second - mu0**2 - mu1**2, 0.0)}


# nodes per half line of the tensor rule over the target's k coordinates
TARGET_HALF = {1: _GL_HALF, 2: 120, 3: 40}


def tensor_rule(k: int, n_half: int):
    """Tensor product of :func:`_normal_rule` over k coordinates: nodes (N, k) and weights."""
    x1, w1 = _normal_rule(n_half)
    grids = np.meshgrid(*([x1] * k), indexing="ij")
    z = np.stack([g.ravel() for g in grids], axis=-1)
    w = np.ones(z.shape[0])
    for i in range(k):
        w = w * np.meshgrid(*([w1] * k), indexing="ij")[i].ravel()
    return z, w


def target_coefficients(target, noise: float = 0.0, n_half: int | None = None) -> dict:
    """c1 = E[z g*(z)] (length k), E g*², F² = ‖c1‖² and τ² = E g*² − F² + Δ, by quadrature
    (``n_half`` nodes per half line; default ``TARGET_HALF[k]``)."""
    from ..model import get_target

    tgt = get_target(target)
    k = tgt.k
    if k > 3:
        raise DMFTInputError(
            f"`target` must have k <= 3 directions for the closed form; got k={k} "
            f"({tgt.name})"
        )
    z, w = tensor_rule(k, TARGET_HALF[k] if n_half is None else n_half)
    y = np.asarray(tgt.fn(z), dtype=np.float64)
    c1 = (w * y) @ z
    c0 = float(w @ y)
    ey2 = float(w @ (y * y))
    F2 = float(c1 @ c1)
    return {"c0": c0, "c1": c1, "Ey2": ey2, "F2": F2, "tau2": ey2 - F2 + float(noise)}


def rf_test_error(kappa, alpha1, ridge, activation="relu", target="he2", noise: float = 0.0):
    """Closed-form (d → ∞) test and train error of random-feature ridge regression at init.

    Args:
        kappa: width ratio p/d, in [0.05, 20].
        alpha1: readout sample ratio n₁/d, > 0.
        ridge: λ > 0 (scalar or array; on the scale of the eigenvalues of FᵀF/n₁).
        activation: name in ``dmft.ACTIVATIONS`` (must be non-linear: μ* > 0).
        target: registered target name (k ≤ 3).
        noise: label-noise variance Δ.

    Returns:
        dict with ``test_error`` and ``train_error`` (both E[(y − f)²]/2, the package
        convention, label noise included), ``rho`` (the effective ridge), ``df2`` and the
        coefficients used. Arrays have the shape of ``ridge``.
    """
    kappa = check_real("kappa", kappa, low=0.05, high=20.0)
    alpha1 = check_real("alpha1", alpha1, low=0.0, low_open=True)
    noise = check_real("noise", noise, low=0.0)
    lam = np.asarray(ridge, dtype=np.float64)
    if lam.size == 0 or not np.all(np.isfinite(lam)) or np.any(lam <= 0):
        raise DMFTInputError(f"`ridge` must be > 0 (each value) and finite; got ridge={ridge!r}")
    hc = hermite_coefficients(activation)
    if hc["mustar2"] < 1e-10:
        raise DMFTInputError(
            f"`activation` must be non-linear (μ*² > 0) for the closed form; got "
            f"activation={activation!r} with μ*²={hc['mustar2']:.3g}"
        )
    tc = target_coefficients(target, noise)
    mu1, ms2 = hc["mu1"], hc["mustar2"]
    a, w = marchenko_pastur_rule(kappa, 400, small_side=True)
    sig = mu1**2 * a + ms2  # eigenvalues of Σ
    r = kappa / alpha1  # p / n₁
    flat = lam.ravel()
    rho = _solve_rho(flat, sig, w, r)
    S = sig[None, :]
    R = rho[:, None]
    df1 = r * ((S / (S + R)) @ w)
    df2 = r * ((S**2 / (S + R) ** 2) @ w)
    F2 = tc["F2"]
    # b = μ1 W β, β fixed: βᵀWᵀ h(WWᵀ) Wβ → ‖β‖² (p/d) ∫ a h(a) dMP
    bSinv_b = F2 * kappa * mu1**2 * ((a / sig) @ w)
    bias = R[:, 0] ** 2 * F2 * kappa * mu1**2 * ((a / (S * (S + R) ** 2)) @ w)
    sig_eff2 = tc["tau2"] + F2 - bSinv_b
    mse = (sig_eff2 + bias) / (1.0 - df2)
    # train residual y − f = ρ (K + ρ)⁻¹-type shrinkage: E_train = (λ/ρ)² · E_test (GE identity)
    train_mse = (flat / rho) ** 2 * mse
    shape = lam.shape
    return {
        "test_error": (0.5 * mse).reshape(shape),
        "train_error": (0.5 * train_mse).reshape(shape),
        "rho": rho.reshape(shape),
        "df1": df1.reshape(shape),
        "df2": df2.reshape(shape),
        "mu0": hc["mu0"], "mu1": mu1, "mustar2": ms2, "F2": F2, "tau2": tc["tau2"],
    }


def _solve_rho(lam, sig, w, r, iters: int = 200):
    """Solve λ = ρ(1 − r ∫ ς/(ς + ρ)) for ρ ≥ λ by bisection (monotone in ρ)."""
    lo = lam.copy()
    hi = lam + r * float(sig @ w) + 1.0
    for _ in range(iters):
        mid = 0.5 * (lo + hi)
        g = mid * (1.0 - r * ((sig[None, :] / (sig[None, :] + mid[:, None])) @ w)) - lam
        lo = np.where(g < 0, mid, lo)
        hi = np.where(g < 0, hi, mid)
    return 0.5 * (lo + hi)


def mp_edges(kappa) -> tuple[float, float]:
    """Support [(1 − √κ)², (1 + √κ)²] of the Marchenko–Pastur law of WWᵀ (ratio κ)."""
    kappa = check_real("kappa", kappa, low=0.0, low_open=True)
    return (1 - math.sqrt(kappa)) ** 2, (1 + math.sqrt(kappa)) ** 2
