"""The bulk of the after-step features with its exact second moments (docs/THEORY.md §7.2).

Conditional on ζ the bulk part of feature j is F(t_j, ζ)·g_j (g_j = b̂_j·x) plus independent
noise. Factor the class-by-ζ table F(t, ζ) = Σ_k l_k(t) e_k(ζ) with e_k orthonormal in L²(ζ)
(a weighted SVD): the bulk is then the Gram of p rows r_j = b̂_j ⊗ l(t_j) in R^d ⊗ R^K, the
"channels" k seeing x through e_k(ζ)·x. Its covariance is W ⊙ T, T(t, t') = E F(t, ζ)F(t', ζ),
and its cross-covariance with y is b = B̃ũ, ũ_k = E[e_k(ζ) x y]. The resolvent of such a Gram
has the K × K deterministic equivalent

    (B̃ᵀB̃ + μ)⁻¹ ≈ I_d ⊗ τ(μ),   τ = (κ Σ_c π_c l_c l_cᵀ / (1 + l_cᵀ τ l_c) + μ I)⁻¹,

so every quantity of the ridge formula is a K × K computation. Derivatives in μ use the complex
step (the fixed point is analytic in μ).
"""

from __future__ import annotations

import numpy as np


def channels(F, pc, wzeta, rtol: float = 1e-9):
    """Factor F (classes × ζ nodes): ``L`` (classes × K) with F = L E, and ``coef`` (classes × K)
    with e_k = Σ_c coef[c, k] F[c] (e_k orthonormal under the ζ weights)."""
    A = np.sqrt(pc)[:, None] * F * np.sqrt(wzeta)[None, :]
    U, S, _ = np.linalg.svd(A, full_matrices=False)
    keep = S > rtol * S[0]
    U, S = U[:, keep], S[keep]
    L = U * S[None, :] / np.sqrt(pc)[:, None]
    coef = np.sqrt(pc)[:, None] * U / S[None, :]
    return L, coef


def resolvent(L, pc, kappa, mu, iters: int = 2000, start=None):
    """τ(μ) of the module docstring (K × K; ``mu`` real > 0 or complex near the real axis),
    iterated from ``start`` (default I/μ)."""
    K = L.shape[1]
    tau = np.eye(K, dtype=complex if np.iscomplexobj(mu) else float) / mu
    if start is not None:
        tau = tau * 0 + start
    outer = L[:, :, None] * L[:, None, :]
    for _ in range(iters):
        q = np.einsum("ck,kl,cl->c", L, tau, L)
        new = np.linalg.inv(kappa * np.einsum("c,ckl->kl", pc / (1.0 + q), outer)
                            + mu * np.eye(K))
        if np.max(np.abs(new - tau)) < 1e-15 * np.max(np.abs(new)):
            return new
        tau = 0.5 * (tau + new)
    return tau


def trace_resolvent(L, pc, kappa, mu, start=None):
    """(1/p) Tr (B̃B̃ᵀ + μ)⁻¹ = Σ_c π_c / (μ (1 + l_cᵀ τ l_c)), and τ (for a warm start)."""
    tau = resolvent(L, pc, kappa, mu, start=start)
    q = np.einsum("ck,kl,cl->c", L, tau, L)
    return np.sum(pc / (mu * (1.0 + q))), tau


def _form(x, y, tau, mu):
    """(B̃x̃)ᵀ (B̃B̃ᵀ + μ)⁻¹ (B̃ỹ) = x̃ᵀỹ − μ x̃ᵀ(I ⊗ τ)ỹ; x̃, ỹ of shape (dim, K)."""
    G = x.T @ y
    return np.trace(G) - mu * np.sum(G * tau)


def signal_form(L, pc, kappa, mu, u, q, N):
    """bᵀ(Σ − C N Cᵀ + … )⁻¹b for Σ = B̃B̃ᵀ + μ (Woodbury): b = B̃u, C = [B̃q_m]; u (dim, K),
    q (m, dim, K), N (m × m) the inverse covariance of the spike functions."""
    tau = resolvent(L, pc, kappa, mu)
    bb = _form(u, u, tau, mu)
    if q.shape[0] == 0:
        return bb
    bq = np.array([_form(u, qm, tau, mu) for qm in q])
    qq = np.array([[_form(qm, qn, tau, mu) for qn in q] for qm in q])
    inner = np.linalg.solve(np.eye(len(q)) - qq @ N, bq)
    return bb + bq @ N @ inner


def ridge_errors(L, pc, kappa, alpha1, vbar, lam, u, q, N, ey2_res, step: float = 1e-30):
    """Test mse, ρ and df₂ per λ of the ridge readout on the bulk (Gaussian covariate model with
    covariance B̃B̃ᵀ + V̄ I minus the spike part, cross-covariance b = B̃u with y_res)."""
    ratio = kappa / alpha1

    def g(mu):
        return trace_resolvent(L, pc, kappa, mu)[0]

    def f(rho):
        return signal_form(L, pc, kappa, vbar + rho, u, q, N)

    rho = np.empty_like(lam)
    for i, lv in enumerate(lam):  # λ = ρ (1 − ratio (1 − ρ g(V̄ + ρ))), increasing in ρ
        lo, hi = lv, lv + ratio * (float(pc @ np.sum(L**2, axis=1)) + vbar) + 1.0
        tau = None
        for _ in range(64):  # the bracket shrinks to 2⁻⁶⁴ of its width
            mid = 0.5 * (lo + hi)
            gm, tau = trace_resolvent(L, pc, kappa, vbar + mid, start=tau)
            val = mid * (1.0 - ratio * (1.0 - mid * gm)) - lv
            lo, hi = (mid, hi) if val < 0 else (lo, mid)
        rho[i] = 0.5 * (lo + hi)
    f0 = float(np.real(f(0.0)))
    mse, df2 = np.empty_like(lam), np.empty_like(lam)
    for i, r in enumerate(rho):
        gval = float(np.real(g(vbar + r)))
        dg = float(np.imag(g(vbar + r + 1j * step))) / step
        df2[i] = ratio * (1.0 - 2.0 * r * gval - r * r * dg)
        fr = float(np.real(f(r)))
        df = float(np.imag(f(r + 1j * step))) / step
        bias = f0 - fr + r * df
        mse[i] = (ey2_res - f0 + bias) / (1.0 - df2[i])
    return mse, rho, df2, f0
