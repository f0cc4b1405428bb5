"""Closed-form reference: GD on linear regression through the Marchenko–Pastur law.

Setting (docs/THEORY.md §8.1, the linear case): p = k = 1, σ(h) = h, a = 1, g*(z) = z, square
SUM loss, ridge λ, label noise Δ. With S = XᵀX/d (d×d, n = αd rows of X) the GD step is

    W_{t+1} − W* = A_t (W_t − W*) − η_t λ W* + η_t b,    A_t = (1 − η_t λ) I − η_t S,

with b = √Δ Xᵀξ/√d. W*, W⊥_0 are independent of the eigenvectors of S (rotation invariance), and in
the eigenbasis b_i = √(Δ x_i) ζ_i with ζ_i i.i.d. N(0,1). Hence, for each eigenvalue x,

    e_t(x) = P_t(x) e_0 + K_t(x) (−λ w* + b),  P_t = Π_{s<t}(1 − η_s λ − η_s x),
    K_t(x) = Σ_{s<t} η_s Π_{s<u<t}(1 − η_u λ − η_u x),

and as d → ∞, with ρ the spectral law of S,

    m_t = 1 + ∫ρ(dx) [(m_0 − 1) P_t(x) − λ K_t(x)],
    Q_t = 2 m_t − 1 + ∫ρ(dx) [((m_0 − 1) P_t − λ K_t)² + q_0 P_t² + Δ x K_t²],

With heavy-ball momentum β_t (velocity 0 at t = 0) the same holds with the three-term recursions

    P_{t+1} = (1 + β_t − η_t(x + λ)) P_t − β_t P_{t−1},   P_0 = P_{−1} = 1,
    K_{t+1} = (1 + β_t − η_t(x + λ)) K_t − β_t K_{t−1} + η_t,   K_0 = K_{−1} = 0,

and with Nesterov's look-ahead (gradient at Y_t = W_t + β_t (W_t − W_{t−1}))

    P_{t+1} = (1 − η_t(x + λ)) ((1 + β_t) P_t − β_t P_{t−1}),   K likewise, plus η_t,

since W_{t+1} − W* is then A_t (Y_t − W*) − η_t λ W* + η_t b (docs/THEORY.md §10).

ρ is Marchenko–Pastur: density √((b−x)(x−a))/(2πx) on [a, b] = [(√α−1)², (√α+1)²] plus an
atom of mass max(0, 1−α) at x = 0 (its mean is α = tr S/d).
"""

from __future__ import annotations

import numpy as np

from .._rmt import marchenko_pastur_rule


def linear_gd(alpha: float, lr, ridge: float = 0.0, noise: float = 0.0, m0: float = 0.0,
              q0: float = 1.0, n_quad: int = 4000, momentum=0.0, nesterov: bool = False):
    """Exact d → ∞ trajectories (m_t, Q_t, e_g(t)) of GD on linear regression.

    Args:
        alpha: n/d.
        lr: learning rates η_t, shape (T,).
        ridge: λ.
        noise: label-noise variance Δ.
        m0: initial overlap.
        q0: initial orthogonal norm Q⊥_0.
        momentum: β_t (a scalar or shape (T,)); β_0 has no effect (velocity 0 at t = 0).
        nesterov: the gradient at the look-ahead point (see the module docstring).

    Returns:
        dict with ``m``, ``Q``, ``test_error`` (including Δ/2), each of shape (T+1,).
    """
    lr = np.atleast_1d(np.asarray(lr, dtype=np.float64))
    beta = np.broadcast_to(np.asarray(momentum, dtype=np.float64), lr.shape)
    x, w = marchenko_pastur_rule(alpha, n_quad)
    P = np.ones_like(x)
    K = np.zeros_like(x)
    P_prev, K_prev = P, K
    ms, Qs = [], []
    for t in range(len(lr) + 1):
        e = (m0 - 1.0) * P - ridge * K
        m = 1.0 + np.sum(w * e)
        Q = 2.0 * m - 1.0 + np.sum(w * (e * e + q0 * P * P + noise * x * K * K))
        ms.append(m)
        Qs.append(Q)
        if t < len(lr):
            a = 1.0 - lr[t] * ridge - lr[t] * x
            b = beta[t]
            if nesterov:
                P_new = a * ((1.0 + b) * P - b * P_prev)
                K_new = a * ((1.0 + b) * K - b * K_prev) + lr[t]
            else:
                P_new = (a + b) * P - b * P_prev
                K_new = (a + b) * K - b * K_prev + lr[t]
            P_prev, K_prev, P, K = P, K, P_new, K_new
    m = np.array(ms)
    Q = np.array(Qs)
    return {"m": m, "Q": Q, "test_error": 0.5 * (1.0 - 2.0 * m + Q) + 0.5 * noise}


def linear_gradient_flow(alpha: float, tau, ridge: float = 0.0, noise: float = 0.0,
                         m0: float = 0.0, q0: float = 1.0, n_quad: int = 4000):
    """Exact d → ∞ gradient flow dW/dτ = −λW − ∇L on linear regression (the η → 0 limit of
    :func:`linear_gd` at τ = Σ η_t): P = e^{−τ(x+λ)}, K = (1 − P)/(x + λ) in the same formulas.

    Returns:
        dict with ``m``, ``Q``, ``test_error`` at the times ``tau``.
    """
    tau = np.atleast_1d(np.asarray(tau, dtype=np.float64))
    x, w = marchenko_pastur_rule(alpha, n_quad)
    rate = x + ridge
    ms, Qs = [], []
    for t in tau:
        P = np.exp(-t * rate)
        K = np.where(rate > 0, -np.expm1(-t * rate) / np.where(rate > 0, rate, 1.0), t)
        e = (m0 - 1.0) * P - ridge * K
        m = 1.0 + np.sum(w * e)
        ms.append(m)
        Qs.append(2.0 * m - 1.0 + np.sum(w * (e * e + q0 * P * P + noise * x * K * K)))
    m, Q = np.array(ms), np.array(Qs)
    return {"m": m, "Q": Q, "test_error": 0.5 * (1.0 - 2.0 * m + Q) + 0.5 * noise}
