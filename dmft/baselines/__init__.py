"""Limits and closed forms to compare the discrete-time DMFT with: gradient flow (η → 0), the
online-SGD ODE (one pass, n/d → ∞ in time units τ) and the linear model's exact GD."""

from ._exact import linear_gd as linear_gd
from ._exact import linear_gradient_flow as linear_gradient_flow
from ._exact import marchenko_pastur_rule as marchenko_pastur_rule
from ._flow import solve_flow as solve_flow
from ._online import solve_online as solve_online
