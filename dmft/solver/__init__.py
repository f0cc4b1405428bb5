"""Forward-in-time solver of the discrete-time DMFT equations (spec §2).

At step t everything needed (Q⊥(t,·), R(t,·), R₀(t), m_t) depends on earlier steps only; the
effective samples at step t then give C(t,·), Γ(t,·) and m_{t+1}. One forward sweep is therefore
the exact solution: there is no fixed-point iteration.

Modules, one concept each:

- ``_structure``: what a compiled sweep is specialised on (sizes, schedule, estimator, dtype)
  and :func:`numeric_problem`, the problem's numbers as traced arrays;
- ``_precision``: full-precision matmuls and the mixed-precision dtypes (a float32 solve keeps
  its histories in float32 and its kernels, factor and sums in float64 when x64 is on);
- ``_factor``: the causal block-Cholesky factor of Q⊥, one row per step;
- ``_state``: the typed sweep state, the random draws and the initial state;
- ``_estimators``: the control-variate regression (per schedule) and the response (Stein or
  pathwise) as small strategy Modules;
- ``_step``: one step and the compiled sweep (``eqx.filter_jit``);
- ``_solve``: the public :func:`solve`, :func:`memory_estimate` and the assembly of results;
- ``_sharding``: several devices and hosts (replicas and a replica's samples over a device
  mesh, ``shard_map``).

``benchmarks/dmft_floor.py`` compares the sweep with a lower bound (drawing the normals plus
one pass over the live histories per step).
"""

from ._factor import SCHUR_FLOOR_REL, SCHUR_WARN_REL, append_factor_row
from ._solve import RESPONSES, memory_estimate, solve
from ._state import DRAW_BLOCK
from ._step import TRACE_COUNT

__all__ = ["solve", "append_factor_row", "memory_estimate", "RESPONSES", "SCHUR_FLOOR_REL",
           "SCHUR_WARN_REL", "DRAW_BLOCK", "TRACE_COUNT"]
