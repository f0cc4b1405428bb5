"""Quadrature for the Marchenko–Pastur law, shared by the linear model's closed form
(:mod:`dmft.baselines`) and the random-features theory (:mod:`dmft.features`)."""

from __future__ import annotations

import math

import numpy as np


def marchenko_pastur_rule(alpha: float, n: int = 4000, *, small_side: bool = False):
    """Quadrature nodes and weights of the spectral law of XᵀX/d for X with αd rows and d
    columns of standard normals (the d × d side: an atom 1 − α at 0 when α < 1).

    ``small_side=True`` gives the law of X Xᵀ/d instead (the αd × αd side: the same non-zero
    eigenvalues, their mass scaled by 1/α, and an atom 1 − 1/α at 0 when α > 1), with the mass
    of the continuous part renormalised to remove the quadrature's (tiny) error.

    The substitution x = c + r cos θ turns the square-root edges into a smooth periodic
    integrand, so the midpoint rule in θ converges fast.
    """
    lo = (math.sqrt(alpha) - 1.0) ** 2
    hi = (math.sqrt(alpha) + 1.0) ** 2
    theta = (np.arange(n) + 0.5) * math.pi / n
    c, r = 0.5 * (lo + hi), 0.5 * (hi - lo)
    x = c + r * np.cos(theta)
    w = (r * np.sin(theta)) ** 2 / (2.0 * math.pi * x) * (math.pi / n)
    if small_side:
        atom = max(1.0 - 1.0 / alpha, 0.0)
        w = w / alpha
        w = w * (1.0 - atom) / w.sum()
        if atom > 0:
            return np.concatenate([[0.0], x]), np.concatenate([[atom], w])
        return x, w
    atom = max(0.0, 1.0 - alpha)
    if atom > 0:
        x = np.append(x, 0.0)
        w = np.append(w, atom)
    return x, w
