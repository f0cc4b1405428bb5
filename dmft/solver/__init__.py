"""Forward-in-time solver of the discrete-time DMFT equations (docs/THEORY.md §1).

At step t everything needed (Q⊥(t,·), R(t,·), R₀(t), m_t) depends on earlier steps only; the
effective samples at step t then give C(t,·), Γ(t,·) and m_{t+1}. One forward sweep is therefore
the exact solution: there is no fixed-point iteration.

Modules, one concept each:

- ``_structure``: what a compiled sweep is specialised on (sizes, schedule, estimator, dtype);
  the numbers enter as ``problem.numbers(st.kdtype)`` (``dmft.model.Numbers``), traced;
- ``_factor``: the causal block-Cholesky factor of Q⊥, one row per step;
- ``_state``: the typed sweep state, the random draws and the initial state;
- ``_response``: the response estimators (Stein, pathwise) behind ``AbstractResponse``, and
  the registry of the ``response=`` names;
- ``_regression``: the control-variate regression (per schedule kind) behind
  ``AbstractRegression``;
- ``_sample``: the sample side of a step (the chunked pass: fields, gradients, sums);
- ``_step``: one step (sample side, kernel row, weight side) and the compiled sweep;
- ``_solve``: the public :func:`solve`, its validation and the assembly of results;
- ``_fn``: :func:`solve_fn`, the DMFT as a pure, differentiable function of the numbers
  (a fixed-trip, checkpointed ``lax.scan`` over the same step), :func:`numbers` and
  :func:`unchecked_fn` (the same function without its non-finite check, for ``dmft.optimize``);
- ``_memory``: :func:`memory_estimate` and the pre-flight that refuses what cannot fit
  (:func:`check_memory`);
- ``_grid``: many points of one structure in one vmapped sweep (:func:`solve_points`, used by
  :func:`dmft.sweep`);
- ``_sharding``: several devices and hosts (replicas and a replica's samples over a device
  mesh, ``shard_map``).

``benchmarks/dmft_floor.py`` compares the sweep with a lower bound (drawing the normals plus
one pass over the histories per step).
"""

from ._factor import SCHUR_FLOOR_REL, SCHUR_WARN_REL, append_factor_row
from ._fn import number_fields, numbers, solve_fn, unchecked_fn
from ._grid import solve_points
from ._memory import check_memory, memory_estimate
from ._regression import REGRESSIONS, AbstractRegression
from ._response import RESPONSE_CLASSES, RESPONSES, AbstractResponse
from ._solve import solve
from ._state import DRAW_BLOCK
from ._step import TRACE_COUNT

__all__ = ["solve", "solve_fn", "numbers", "number_fields", "unchecked_fn", "append_factor_row",
           "memory_estimate", "check_memory", "RESPONSES",
           "SCHUR_FLOOR_REL",
           "SCHUR_WARN_REL", "DRAW_BLOCK", "TRACE_COUNT", "AbstractResponse",
           "AbstractRegression", "RESPONSE_CLASSES", "REGRESSIONS", "solve_points"]
