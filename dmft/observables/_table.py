"""The one table of what a run reports: observables, kernels and their dimensions.

Every module that names observables (the result builder, sweeps, io, compare, plot) iterates
this table: a reported observable is one entry in ``OBSERVABLES`` (or ``OPTIONAL``) plus the code
that computes it; a derived one is one entry in ``DERIVED`` with its function. numpy only, so that
file readers need nothing beyond numpy and h5py.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import NamedTuple

import numpy as np


class Entry(NamedTuple):
    dims: tuple  # dimension names after the leading (grid, replica or seed) axes
    description: str
    label: str  # short plot label (matplotlib mathtext)
    # derived entries: (value, error) of the reported observables -> (value, error); the
    # leading axes (grid, step) pass through
    derive: Callable | None = None


# Reported by every kind of run, in this order (value and standard error per entry).
OBSERVABLES: dict[str, Entry] = {
    "m": Entry(("step", "unit", "target_dir"),
               "overlap m_t = W_t W*^T / d with the target directions", "$m_t$"),
    "Q": Entry(("step", "unit", "unit2"), "student Gram matrix Q_t = W_t W_t^T / d", "$Q_t$"),
    "test_error": Entry(("step",), "test error e_g(t) = E[(y - f)^2 / 2] on a fresh sample, "
                        "label noise included", "$e_g$"),
    "train_loss": Entry(("step",), "training loss (1/n) sum_nu (y_nu - f_nu)^2 / 2",
                        r"$\hat L$"),
}

# Present only when computed: a when the second layer is trained (lr_a > 0), test_loss for a
# classification loss.
OPTIONAL: dict[str, Entry] = {
    "a": Entry(("step", "unit"), "second layer a_t (trained with learning rate lr_a)", "$a_t$"),
    "test_loss": Entry(("step",), "test loss E[loss(y, f)] on a fresh sample (classification "
                       "losses, whose test_error is the classification error)", "test loss"),
}

# DMFT memory kernels, each (step, step_s, unit, unit2).
KERNEL_DIMS = ("step", "step_s", "unit", "unit2")
KERNELS: dict[str, Entry] = {
    "Qperp": Entry(KERNEL_DIMS, "orthogonal overlap kernel Qperp(t, s) = E[w_t w_s^T]",
                   r"$Q_\perp$"),
    "C": Entry(KERNEL_DIMS, "noise kernel C(t, s) = alpha E[g_t g_s^T]", "$C$"),
    "Gamma": Entry(KERNEL_DIMS, "sample-side response Gamma(t, s) = alpha E[dg_t / dr_s]",
                   r"$\Gamma$"),
    "R": Entry(KERNEL_DIMS, "weight-side response R(t, s) = d theta_t / d force_s", "$R$"),
}



def m_norm(obs: dict) -> tuple:
    """‖m̄_t‖_F, the Frobenius norm of the mean overlaps, and the error bound
    SE = √(Σ_ji SE_ji²): by the triangle inequality |‖m̄‖ − ‖m‖| ≤ ‖m̄ − m‖, and
    E‖m̄ − m‖² = Σ SE². Unlike the delta method, the bound holds at m = 0 too (where the norm is
    not differentiable and the delta method's error vanishes), so ‖m̄‖ > 4 SE is a safe test of
    m ≠ 0; it is conservative by up to √(pk) when the signal sits in one entry."""
    v, e = obs["m"]
    return np.sqrt(np.sum(v**2, axis=(-2, -1))), np.sqrt(np.sum(e**2, axis=(-2, -1)))


def unit_norm(obs: dict) -> tuple:
    """‖w_j‖²/d = Q_jj per student unit, with the standard errors of Q's diagonal."""
    v, e = obs["Q"]
    return np.diagonal(v, axis1=-2, axis2=-1), np.diagonal(e, axis1=-2, axis2=-1)


# Derived observables, computed from the reported ones wherever a result is (a trajectory, a
# sweep, a file read back), by name.
DERIVED: dict[str, Entry] = {
    "m_norm": Entry(("step",), "Frobenius norm of the overlaps m_t (its error is a bound)",
                    r"$\|m_t\|$", m_norm),
    "unit_norm": Entry(("step", "unit"), "squared norm of each student unit |w_j|^2 / d = Q_jj",
                       r"$\|w_j\|^2/d$", unit_norm),
}
