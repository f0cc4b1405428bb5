"""The d → ∞ theory of a wide network after one giant step (docs/THEORY.md §7.2).

After one full-batch step with η = lr·√p on n₀ = α₀d samples, row j of the first layer is
(to leading order in d)

    w_j' = b_j + s_j u v,   u = lr·μ1,   v = Xᵀy/n₀,   s_j = ±1 the sign of a_j,

with a bulk b_j = w_j + lr s_j r_j that is isotropic, of squared norm c_s, independent of v, and a
common direction v of squared norm ‖v‖² = F² + E y²/α₀ whose overlap with the target is
c₁ = E[z g*(z)]. So every feature is σ(√c_s g_j + s_j r ζ) with g_j = b̂_j·x, ζ = v̂·x, and the
spike strength r = lr μ1 ‖v‖. Conditional on the scalar ζ, the features are Gaussian-equivalent
random features whose coefficients depend on ζ and on the sign class s:

    M_s(ζ) = E_g σ(√c_s g + s r ζ) − E σ(√(c_s + r²) G)   (shared by all p features: spikes),
    F_s(ζ) = E_g[g σ(√c_s g + s r ζ)]                    (linear coefficient of the bulk),
    V_s(ζ) = Var_g σ(√c_s g + s r ζ) − F_s(ζ)²            (non-linear remainder: noise).

Spectrum: the mean part gives at most two outliers of FᵀF/n₁ of size Θ(p) (one per sign class
combination), at p·θ with θ the eigenvalues of ½K, K_ss' = E[M_s M_s'], plus the bulk's mean
variance times p/n₁. The eigenvector of the odd combination (M₊ − M₋) maps to the input direction
v̂, whose overlap with target direction i is |c₁,i|/‖v‖.

Readout: the spike directions have eigenvalues Θ(p) ≫ λ, so the ridge fits the functions
M(t, ζ) without penalty; what is left of y is fitted by the bulk, whose second moments are kept
exactly (:mod:`._channels`: the class-by-ζ structure of F as K channels, a K × K deterministic
equivalent); ``bulk="homoscedastic"`` replaces that by E F on the signal and E F² on the
covariance, the closed form at initialization with after-step coefficients. Both reduce to
:func:`rf_test_error` at lr = 0. What stays approximate is the ζ-dependent resolvent weight of
the exact conditional Gaussian equivalence (docs/THEORY.md §7.2); the simulator measures it
(validation/features.py --part theory).
"""

from __future__ import annotations

import dataclasses
import math
from types import SimpleNamespace

import numpy as np

from .._errors import DMFTInputError
from .._rmt import marchenko_pastur_rule
from .._validate import check_choice, check_x64
from ._channels import channels, ridge_errors
from ._rf_theory import (
    TARGET_HALF,
    _normal_rule,
    _solve_rho,
    hermite_coefficients,
    target_coefficients,
    tensor_rule,
)

# Rules at the standard level (scaled by 3/4 for the quadrature-error estimate): Gauss–Legendre
# nodes per side of 0 in the conditional moments, per half line of the ζ rule, and of the
# Marchenko–Pastur rule (the same as rf_test_error's); the target's rule is TARGET_HALF.
_GL_NODES = 200
_ZETA_HALF = 100
_MP_NODES = 400
_T_NODES = 24  # Gauss–Hermite nodes over a Gaussian second layer
N_SPIKES = 3  # outliers reported (two for a ±1 second layer)


@dataclasses.dataclass
class FeaturesTheory:
    """The d → ∞ prediction for one :class:`FeaturesConfig` (one giant step).

    Fields named as the simulation's outputs (``step/...`` of :class:`FeaturesResult`) hold the
    predicted value of that output: ``test_error``, ``train_error`` (per λ), ``top_over_p``
    (the Θ(p) outliers of FᵀF/n₁ divided by p, descending), ``overlap`` (|cos| of the input
    direction of each outlier's eigenvector with the target directions; NaN where the direction
    is not deterministic), and ``error``: the quadrature error of each (the change when the
    rules are refined), in place of a Monte Carlo error. ``top`` gives the outliers at the
    config's p (p·θ, ascending like ``step/top``). There is no ``n_outliers``: the edge of the
    after-step bulk of FᵀF/n₁ is not computed.
    """

    config: object
    test_error: np.ndarray
    train_error: np.ndarray
    test_error_at_p: np.ndarray
    train_error_at_p: np.ndarray
    top_over_p: np.ndarray
    overlap: np.ndarray
    parameters: dict
    error: dict

    @property
    def top(self) -> np.ndarray:
        """The outliers at this config's p, p·θ, ascending like the simulation's ``step/top``
        (leading order: the simulated outliers sit O(1) above)."""
        return np.sort(self.config.p * np.asarray(self.top_over_p))

    def __str__(self) -> str:
        c = self.config
        cells = "  ".join(f"λ={lam:g}: {v:.4f}" for lam, v in zip(c.ridges, self.test_error,
                                                                    strict=True))
        return (f"features_theory: {c.target}, σ={c.activation}, κ={c.kappa:g}, α0={c.alpha0:g}, "
                f"α1={c.alpha1:g}, lr={c.lr:g}, second layer {c.second_layer}\n"
                f"  test error (d→∞) {cells}\n"
                f"  outliers/p {np.array2string(np.asarray(self.top_over_p), precision=5)}, "
                f"overlap of the top one with the target directions "
                f"{np.array2string(np.asarray(self.overlap[0]), precision=3)}")

    def as_dict(self) -> dict:
        out = {"test_error": self.test_error, "train_error": self.train_error,
               "test_error_at_p": self.test_error_at_p,
               "train_error_at_p": self.train_error_at_p,
               "top_over_p": self.top_over_p, "overlap": self.overlap}
        out.update({f"error/{k}": v for k, v in self.error.items()})
        out.update({f"parameters/{k}": v for k, v in self.parameters.items()})
        return out


def _conditional_moments(act, scale, shift, n_half=_GL_NODES):
    """E σ(H), E[G σ(H)], E σ(H)², E[G² σ(H)] for H = scale·G + shift, G ~ N(0, 1), one per
    ``shift``
    (``scale``: a number or one per shift).

    The integral runs over h = scale·g + shift with Gauss–Legendre rules on each side of 0, so a
    kink of σ at 0 (ReLU) sits on a node boundary whatever the shift."""
    shift = np.asarray(shift, dtype=np.float64)[:, None]
    scale = np.broadcast_to(np.asarray(scale, dtype=np.float64), shift.shape[:1])[:, None]
    x, w = np.polynomial.legendre.leggauss(n_half)
    half = 12.0 * scale
    lo, hi = shift - half, shift + half
    mid = np.clip(0.0, lo, hi)
    # [lo, mid] and [mid, hi]; an empty side gets zero weight
    h = np.concatenate([lo + (x + 1) / 2 * (mid - lo), mid + (x + 1) / 2 * (hi - mid)], axis=1)
    wh = np.concatenate([w[None, :] * (mid - lo) / 2, w[None, :] * (hi - mid) / 2], axis=1)
    g = (h - shift) / scale
    dens = np.exp(-0.5 * g * g) / (math.sqrt(2 * math.pi) * scale)
    s = np.asarray(act.fn(h), dtype=np.float64)
    wd = wh * dens
    return (np.sum(wd * s, axis=1), np.sum(wd * g * s, axis=1), np.sum(wd * s * s, axis=1),
            np.sum(wd * g * g * s, axis=1))


def _target_along(tgt, k, direction, refine):
    """Nodes t and weights of a normal rule along ``direction`` (unit, length k), with the
    conditional mean E[g*(z) | ĉ·z = t] at each node (a normal rule over the orthogonal
    complement)."""
    t, wt = _normal_rule(int(200 * refine))
    if k == 1:
        g = np.asarray(tgt.fn((t * direction[0])[:, None]), dtype=np.float64)
        return t, wt, g, (g * t * direction[0])[:, None]
    basis = np.linalg.qr(np.column_stack([direction, np.eye(k)]))[0][:, :k]
    basis[:, 0] = direction  # QR may flip the sign of the first column
    u, wu = tensor_rule(k - 1, int({2: 120, 3: 30}[k] * refine))
    z = t[:, None, None] * basis[:, 0][None, None, :] + (u @ basis[:, 1:].T)[None, :, :]
    g = np.asarray(tgt.fn(z.reshape(-1, k)), dtype=np.float64).reshape(len(t), len(u))
    return t, wt, g @ wu, np.einsum("tu,tuk,u->tk", g, z, wu)


def _setup(c, refine: float) -> SimpleNamespace:
    """The target's and activation's coefficients, the step's parameters (r, γ, c per class)
    and the conditional tables M, F, V on the ζ nodes."""
    from ..model import get_activation, get_target

    act, tgt = get_activation(c.activation), get_target(c.target)
    k = tgt.k
    tc_ = target_coefficients(c.target, c.noise, n_half=int(TARGET_HALF[k] * refine))
    c0, c1, F2 = tc_["c0"], tc_["c1"], tc_["F2"]
    ey2 = tc_["Ey2"] + c.noise  # E y² with the label noise
    mu1 = hermite_coefficients(c.activation)["mu1"]
    xs, ws = _normal_rule(int(200 * refine))
    dsig = np.asarray(act.deriv(xs), dtype=np.float64)
    var_dsig = max(float(ws @ (dsig * dsig)) - mu1**2, 0.0)
    e2 = float(ws @ ((xs**2 - 1.0) * np.asarray(act.fn(xs), dtype=np.float64)))  # E[G σ'(G)]
    lr = c.lr
    v2 = F2 + ey2 / c.alpha0
    r = lr * mu1 * math.sqrt(v2)
    gamma = math.sqrt(F2 / v2)
    # classes of second-layer weights a_j = t/√p: t = ±1 (weights ½) or t ~ N(0, 1)
    if c.second_layer == "sign":
        tc, pc = np.array([1.0, -1.0]), np.array([0.5, 0.5])
    else:
        tc, pc = np.polynomial.hermite_e.hermegauss(int(_T_NODES * refine))
        pc = pc / pc.sum()
    cs = (1.0 + lr * tc * c0 * e2) ** 2 + lr**2 * tc**2 * ey2 * var_dsig / c.alpha0
    zeta, wzeta = _normal_rule(int(_ZETA_HALF * refine))
    n_gl = int(_GL_NODES * refine)
    centres = _conditional_moments(act, np.sqrt(cs + (tc * r) ** 2), np.zeros(len(tc)),
                                   n_gl)[0]
    nz = len(zeta)
    m0, m1, m2, _ = (q.reshape(len(tc), nz) for q in _conditional_moments(
        act, np.repeat(np.sqrt(cs), nz), (tc[:, None] * r * zeta[None, :]).ravel(), n_gl))
    return SimpleNamespace(
        act=act, tgt=tgt, k=k, c0=c0, c1=c1, F2=F2, ey2=ey2, mu1=mu1, v2=v2, r=r, gamma=gamma,
        tc=tc, pc=pc, cs=cs, zeta=zeta, wzeta=wzeta, n_gl=n_gl, centres=centres,
        M=m0 - centres[:, None],
        F=m1,  # coefficient of the unit-variance g_j = b̂_j·x
        V=np.maximum(m2 - m0**2 - m1**2, 0.0))


def _spikes(s) -> SimpleNamespace:
    """The Θ(p) outliers: the mean part Σ_j u_j M(t_j, ζ) of the features is the operator K
    (K_cc' = E[M_c M_c']) on the classes weighted by pc: outliers p·eig(Π^½ K Π^½)."""
    K = (s.M * s.wzeta) @ s.M.T
    half = np.sqrt(s.pc)
    theta, U = np.linalg.eigh(half[:, None] * K * half[None, :])
    order = np.argsort(theta)[::-1]
    theta, U = np.maximum(theta[order], 0.0), U[:, order]
    n_spikes = min(N_SPIKES, len(theta))
    # eigenvector φ(t) = Π^-½ U_i maps to the input direction √p·lr·μ1·E[φ(t) t]·v + O(1):
    # deterministic (v̂) when E[φ t] ≠ 0, else random
    v_over = np.abs(s.c1) / math.sqrt(s.v2)
    along_v = np.abs(U.T @ (half * s.tc))
    overlap = np.array([v_over if along_v[i] > 1e-6 else np.full(s.k, np.nan)
                        for i in range(n_spikes)])
    return SimpleNamespace(K=K, half=half, theta=theta, U=U, n_spikes=n_spikes,
                           overlap=overlap)


def _spike_fit(s, sp, refine: float) -> SimpleNamespace:
    """The unpenalised fit β = K⁺E[M(·, ζ) y] of the spike functions and what it leaves."""
    Ey_psi = np.zeros(len(s.tc))
    along = None
    if s.F2 > 0:
        # E_ω M_c(γ t + √(1 − γ²) ω) = E σ(√(c_c + t_c² r²(1 − γ²)) G + t_c r γ t) − centre is a
        # function of t = ĉ₁·z only: E[y M_c(ζ)] = E_t[h_c(t) E(g*(z) | t)]
        along = _target_along(s.tgt, s.k, s.c1 / math.sqrt(s.F2), refine)
        tt, wt, g_of_t, _ = along
        nt = len(tt)
        h = _conditional_moments(
            s.act, np.repeat(np.sqrt(s.cs + (s.tc * s.r) ** 2 * (1 - s.gamma**2)), nt),
            (s.tc[:, None] * s.r * s.gamma * tt[None, :]).ravel(),
            s.n_gl)[0].reshape(len(s.tc), nt)
        Ey_psi = (h - s.centres[:, None]) @ (wt * g_of_t)
    beta = np.linalg.pinv(sp.K, rcond=1e-10, hermitian=True) @ Ey_psi
    return SimpleNamespace(Ey_psi=Ey_psi, beta=beta, ey2_res=s.ey2 - float(beta @ Ey_psi),
                           along=along)


def _bulk_homoscedastic(c, s, fit, lam, refine: float):
    """E F on the signal (the linear part of y_res), E F² on the covariance: the closed form
    at initialization with after-step coefficients."""
    kv = float(fit.beta @ (s.M @ (s.wzeta * s.zeta)))  # E[x y_res] = c₁ − kv·v̂
    F2_res = max(s.F2 - 2.0 * kv * s.F2 / math.sqrt(s.v2) + kv**2, 0.0)
    Fbar = float(s.pc @ (s.F @ s.wzeta))
    T = float(s.pc @ ((s.F**2) @ s.wzeta))
    Vbar = float(s.pc @ (s.V @ s.wzeta))
    ratio = c.kappa / c.alpha1
    a, wa = marchenko_pastur_rule(c.kappa, int(_MP_NODES * refine), small_side=True)
    sig = T * a + Vbar
    rho = _solve_rho(lam, sig, wa, ratio)
    S, R = sig[None, :], rho[:, None]
    df2 = ratio * ((S**2 / (S + R) ** 2) @ wa)
    explained = Fbar**2 * F2_res * c.kappa * ((a / sig) @ wa)
    bias = R[:, 0] ** 2 * Fbar**2 * F2_res * c.kappa * ((a / (S * (S + R) ** 2)) @ wa)
    mse = (fit.ey2_res - explained + bias) / (1.0 - df2)
    return mse, rho, df2, {"F2_res": F2_res, "Fbar": Fbar, "T": T}


def _bulk_channels(c, s, sp, fit, lam):
    """The bulk with its exact second moments (:mod:`._channels`)."""
    k, tc = s.k, s.tc
    # x-space: the k target coordinates and the direction ω of v's noise part
    vx = np.append(s.c1, math.sqrt(max(s.v2 - s.F2, 0.0))) / math.sqrt(s.v2)
    W = np.zeros((len(tc), k + 1))  # E[F(t_c, ζ) x g*(z)]
    if s.F2 > 0:
        tt, wt, g_of_t, zg_of_t = fit.along
        nt = len(tt)
        b = math.sqrt(max(1.0 - s.gamma**2, 0.0))
        var = s.cs + (tc * s.r * b) ** 2
        q0, q1, _, q3 = (qq.reshape(len(tc), nt) for qq in _conditional_moments(
            s.act, np.repeat(np.sqrt(var), nt), (tc[:, None] * s.r * s.gamma * tt[None, :]).ravel(),
            s.n_gl))
        EF = np.sqrt(s.cs / var)[:, None] * q1  # E_ω F(t_c, γs + bω)
        EwF = (np.sqrt(s.cs) * tc * s.r * b / var)[:, None] * (q3 - q0)  # E_ω[ω F(...)]
        # E_s[EF(s) E(z g* | s)], its constant part with c₁ of the axis-aligned rule
        mean = EF @ wt
        W[:, :k] = ((EF - mean[:, None]) * wt[None, :]) @ zg_of_t + mean[:, None] * s.c1
        W[:, k] = (EwF * wt[None, :]) @ g_of_t
    else:  # ζ = ω, independent of the target
        W[:, k] = s.c0 * (s.F @ (s.wzeta * s.zeta))
    spike = fit.beta @ s.M  # the spike fit βᵀM(·, ζ) on the ζ nodes
    Uc = W - (s.F @ (s.wzeta * s.zeta * spike))[:, None] * vx[None, :]  # E[F x y_res]
    L, coef = channels(s.F, s.pc, s.wzeta)
    u = Uc.T @ coef  # (k + 1, K): ũ_k = E[e_k(ζ) x y_res]
    E = coef.T @ s.F  # e_k on the ζ nodes
    Y = (E * (s.wzeta * s.zeta)[None, :]) @ s.M.T  # E[ζ e_k M_m], (K, classes)
    q = vx[None, :, None] * Y.T[:, None, :]  # cross-covariance vectors, (m, k + 1, K)
    N = np.linalg.pinv(sp.K, rcond=1e-10, hermitian=True)
    Vbar = float(s.pc @ (s.V @ s.wzeta))
    mse, rho, df2, explained = ridge_errors(L, s.pc, c.kappa, c.alpha1, Vbar, lam, u, q, N,
                                            fit.ey2_res)
    return mse, rho, df2, {"explained_by_bulk": explained, "channels": L.shape[1]}


def _solve(c, refine: float, bulk: str = "channels") -> dict:
    """One evaluation of the theory with the quadrature rules scaled by ``refine``."""
    s = _setup(c, refine)
    sp = _spikes(s)
    fit = _spike_fit(s, sp, refine)
    lam = np.asarray(c.ridges, dtype=np.float64)
    if bulk == "homoscedastic":
        mse, rho, df2, extra = _bulk_homoscedastic(c, s, fit, lam, refine)
    else:
        mse, rho, df2, extra = _bulk_channels(c, s, sp, fit, lam)
    # at finite p the spikes (eigenvalues p·θ) are shrunk by the ridge: each adds the share of
    # E y² it explains times (ρ/(pθ + ρ))² to the bias
    theta = sp.theta
    cov = sp.U.T @ (sp.half * fit.Ey_psi)
    share = np.where(theta > 1e-10 * max(theta.max(), 1e-300),
                     cov**2 / np.maximum(theta, 1e-300), 0.0)
    shrink = (rho[:, None] / (c.p * theta[None, :] + rho[:, None])) ** 2 @ share
    mse_d = mse + shrink / (1.0 - df2)
    bulk_var = float(s.pc @ ((s.F**2 + s.V) @ s.wzeta))
    return {
        "test_error": 0.5 * mse,
        "train_error": 0.5 * (lam / rho) ** 2 * mse,
        "test_error_at_p": 0.5 * mse_d,
        "train_error_at_p": 0.5 * (lam / rho) ** 2 * mse_d,
        "top_over_p": theta[:sp.n_spikes],
        "overlap": sp.overlap,
        "parameters": {"r": s.r, "gamma": s.gamma, "v_norm2": s.v2, "c_class": s.cs,
                       "t_class": s.tc, "mu1": s.mu1, "c0": s.c0, "F2": s.F2, "Ey2": s.ey2,
                       "Ey2_res": fit.ey2_res, "Vbar": float(s.pc @ (s.V @ s.wzeta)),
                       "beta": fit.beta, "bulk_var": bulk_var, "rho": rho, "df2": df2,
                       **extra},
    }


def features_theory(config, *, bulk: str = "channels") -> FeaturesTheory:
    """The d → ∞ prediction for a :class:`FeaturesConfig` with one giant step.

    Args:
        config: a :class:`dmft.features.FeaturesConfig` with ``steps=1`` and
            ``lr_scaling="sqrt_p"`` (η = lr·√p).
        bulk: ``"channels"`` (the bulk's second moments exactly) or ``"homoscedastic"``.
            ``config.d`` only sets p for the ``*_at_p`` fields: the config's memory check is
            the simulator's, so for large α₀ or α₁ pass a small d.

    Returns:
        :class:`FeaturesTheory` (test and train error per λ, the Θ(p) outliers divided by p,
        the eigenvector overlaps, the parameters of the equivalent model, quadrature errors).
    """
    from ._config import FeaturesConfig

    check_x64("float64")  # the activations are evaluated by JAX: float64 needs x64 mode
    if not isinstance(config, FeaturesConfig):
        raise DMFTInputError(f"`config` must be a FeaturesConfig; got {type(config).__name__}")
    if config.steps != 1:
        raise DMFTInputError(f"`steps` must be 1 for the after-step theory; got "
                             f"steps={config.steps}")
    if getattr(config, "samples_exponent", 1.0) != 1.0:
        raise DMFTInputError(
            "`samples_exponent` must be 1 for the after-step theory (n₀ = α₀d: one step learns "
            "only the target's linear direction; n₀ ∝ d^ℓ with ℓ > 1 is not covered); got "
            f"samples_exponent={config.samples_exponent!r}")
    if config.lr_scaling != "sqrt_p":
        raise DMFTInputError("`lr_scaling` must be 'sqrt_p' (the giant step) for the theory; "
                             f"got lr_scaling={config.lr_scaling!r}")
    check_choice("bulk", bulk, {"channels", "homoscedastic"})
    ms2 = hermite_coefficients(config.activation)["mustar2"]
    if ms2 < 1e-10:
        raise DMFTInputError(
            f"`activation` must be non-linear (μ*² > 0) for the after-step theory: a linear "
            f"activation has no bulk noise and a degenerate Gaussian equivalent; got "
            f"activation={config.activation!r} with μ*²={ms2:.3g}")
    coarse, fine = _solve(config, 0.75, bulk), _solve(config, 1.0, bulk)
    err = {k: np.abs(np.asarray(fine[k]) - np.asarray(coarse[k])) for k in _ESTIMATED}
    return FeaturesTheory(config=config, **{k: fine[k] for k in _ESTIMATED},
                          overlap=fine["overlap"], parameters=fine["parameters"], error=err)


_ESTIMATED = ("test_error", "train_error", "test_error_at_p", "train_error_at_p", "top_over_p")
