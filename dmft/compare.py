"""Theory against simulation: z-scores per observable and step, and a pass/fail verdict.

For every observable entry (each m_ji, each Q_jl with j <= l, the test error and the train loss)
and every step t present in both runs,

    z(t) = (theory(t) − sim(t)) / sqrt(SE_theory(t)² + SE_sim(t)² + sys²),

where ``sys`` is an optional stated allowance for finite-d effects (default 0); a rounding floor
of 1e-10 relative is also added in quadrature (see ``_zscore``). The verdict is
*pass* when max |z| over all entries and steps is below ``threshold`` (default 4), every compared
value and standard error is finite (a NaN fails the verdict and the entry is named), and both runs
have ``status="ok"`` (a diverged or blown-up run fails it; see docs/FORMAT.md). The first run must
be a theory (kind ``dmft``, ``flow`` or ``online``) and the second a simulation.
"""

from __future__ import annotations

import dataclasses
from typing import NamedTuple

import numpy as np

from ._errors import DMFTInputError
from ._validate import check_real
from .observables import OBSERVABLES

OBS_ORDER = tuple(OBSERVABLES)  # the one table (dmft.observables)
THEORY_KINDS = ("dmft", "flow", "online")
SIM_KINDS = ("simulation",)
ROUND_TOL = 1e-10  # relative rounding allowance, see _zscore


@dataclasses.dataclass
class ZRow:
    """One observable entry over time."""

    observable: str
    label: str
    index: tuple
    theory: np.ndarray
    theory_se: np.ndarray
    sim: np.ndarray
    sim_se: np.ndarray
    z: np.ndarray

    @property
    def max_abs_z(self) -> float:
        finite = np.abs(self.z[~np.isnan(self.z)])
        return float(finite.max()) if finite.size else float("nan")


@dataclasses.dataclass
class ZTable:
    """All z-scores of one comparison, and its verdict."""

    step: np.ndarray
    rows: list[ZRow]
    threshold: float
    sys_error: float
    # reasons that fail the verdict whatever the z-scores (a run that is not "ok", ...)
    failures: list[str] = dataclasses.field(default_factory=list)

    @property
    def nan_entries(self) -> list[str]:
        """One text per entry with a NaN: which side (value or standard error) and where."""
        out = []
        for r in self.rows:
            for what, arr in (("theory value", r.theory), ("theory SE", r.theory_se),
                              ("simulation value", r.sim), ("simulation SE", r.sim_se)):
                bad = np.nonzero(~np.isfinite(np.asarray(arr, dtype=np.float64)))[0]
                if bad.size:
                    steps = ",".join(str(int(self.step[i])) for i in bad[:4])
                    more = f" (+{bad.size - 4} more)" if bad.size > 4 else ""
                    out.append(f"{r.label}: {what} is NaN/inf at t={steps}{more}")
        return out

    @property
    def max_abs_z(self) -> float:
        vals = [r.max_abs_z for r in self.rows if not np.isnan(r.max_abs_z)]
        return max(vals) if vals else float("nan")

    @property
    def worst(self) -> tuple[str, int]:
        """(entry label, step) of the largest |z|."""
        best = ("", -1)
        top = -1.0
        for r in self.rows:
            az = np.where(np.isnan(r.z), -1.0, np.abs(r.z))
            if az.size and az.max() > top:
                top = float(az.max())
                best = (r.label, int(self.step[int(np.argmax(az))]))
        return best

    @property
    def passed(self) -> bool:
        if self.failures or self.nan_entries:
            return False
        mz = self.max_abs_z
        return bool(np.isfinite(mz) and mz < self.threshold)

    def verdict(self) -> str:
        label, t = self.worst
        word = "PASS" if self.passed else "FAIL"
        where = f" at {label}, t={t}" if label else ""
        lines = [f"max |z| = {self.max_abs_z:.2f}{where} (threshold {self.threshold:g}): {word}"]
        nan = self.nan_entries
        if nan:
            shown = "; ".join(nan[:3]) + (f"; and {len(nan) - 3} more" if len(nan) > 3 else "")
            lines.append(f"FAIL: {len(nan)} compared entries have NaN/inf: {shown}")
            if any("SE is NaN" in x for x in nan):
                lines.append("  a NaN standard error means the run has a single seed or replica "
                             "(the SE needs at least 2); rerun with --seeds 2 or more")
        for why in self.failures:
            lines.append(f"FAIL: {why}")
        return "\n".join(lines)

    def __str__(self) -> str:
        return format_ztable(self)


def _zscore(th, se_th, sim, se_sim, sys_error):
    """z with a rounding floor: quantities exact in both runs (e.g. m_0, Q_0 at t = 0) have
    standard errors at the level of float64 rounding, whose ratio means nothing; a relative
    allowance ``ROUND_TOL·(1 + |value|)`` in quadrature makes such agreements z ≈ 0 while any
    real difference still gives a huge z."""
    diff = th - sim
    scale = 1.0 + np.maximum(np.abs(th), np.abs(sim))
    denom = np.sqrt(se_th**2 + se_sim**2 + sys_error**2 + (ROUND_TOL * scale) ** 2)
    return diff / denom


def _problem_differences(a, b) -> list[str]:
    da, db = a.to_dict(), b.to_dict()
    return [key for key in sorted(da) if da.get(key) != db.get(key)]


def _status_failure(side: str, traj) -> str | None:
    if traj.status == "ok":
        return None
    return (f"the {side} run has status {traj.status!r} (first bad step "
            f"{traj.first_bad_step}); its values past that step are not a valid dynamics")


def zscore_table(theory, sim, *, threshold: float = 4.0, sys_error: float = 0.0,
                 check_problem: bool = True, allow_flag: str = "check_problem=False"
                 ) -> ZTable:
    """z-scores of ``theory`` (usually DMFT) against ``sim`` (usually a simulation).

    Args:
        theory, sim: :class:`~dmft.Trajectory` objects or paths to saved files.
        threshold: the verdict passes when max |z| < threshold.
        sys_error: an absolute allowance added in quadrature to the combined standard error.
        check_problem: refuse runs of different problems (p, k, α, η, ...).
        allow_flag: how the refusal message tells the caller to compare anyway (the CLI
            passes ``--allow-different``).

    Returns:
        A :class:`ZTable` over the steps present in both runs.
    """
    from .io import load

    if not hasattr(theory, "kind"):
        theory = load(theory)
    if not hasattr(sim, "kind"):
        sim = load(sim)
    threshold = check_real("threshold", threshold, low=0.0, low_open=True)
    sys_error = check_real("sys_error", sys_error, low=0.0)
    check_kinds(theory.kind, sim.kind)
    pt, ps = theory.problem, sim.problem
    if (pt.p, pt.k) != (ps.p, ps.k):
        raise DMFTInputError(
            f"theory and simulation have different shapes: (p, k)=({pt.p}, {pt.k}) vs "
            f"({ps.p}, {ps.k})"
        )
    if check_problem:
        diff = _problem_differences(pt, ps)
        if diff:
            raise DMFTInputError(
                f"theory and simulation were run for different problems (differ in "
                f"{', '.join(diff)}); pass {allow_flag} to compare anyway"
            )
    n = min(len(theory.step), len(sim.step))
    if n == 0:
        raise DMFTInputError("theory and simulation have no step in common")
    step = np.asarray(theory.step[:n])
    rows: list[ZRow] = []
    for name in OBS_ORDER:
        a, b = theory.observable(name), sim.observable(name)
        va, ea = np.asarray(a.value)[:n], np.asarray(a.error)[:n]
        vb, eb = np.asarray(b.value)[:n], np.asarray(b.error)[:n]
        if name == "m":
            idx = [(j, i) for j in range(pt.p) for i in range(pt.k)]
        elif name == "Q":
            idx = [(j, l) for j in range(pt.p) for l in range(j, pt.p)]
        else:
            idx = [()]
        for ix in idx:
            sl = (slice(None),) + ix
            label = f"{name}[{','.join(map(str, ix))}]" if ix else name
            rows.append(ZRow(name, label, ix, va[sl], ea[sl], vb[sl], eb[sl],
                             _zscore(va[sl], ea[sl], vb[sl], eb[sl], sys_error)))
    failures = [f for f in (_status_failure("theory", theory), _status_failure("simulation", sim))
                if f]
    return ZTable(step=step, rows=rows, threshold=threshold, sys_error=sys_error,
                  failures=failures)


def check_kinds(theory_kind: str, sim_kind: str) -> None:
    """The first run must be a theory (dmft, flow, online), the second a simulation."""
    if theory_kind in THEORY_KINDS and sim_kind in SIM_KINDS:
        return
    if theory_kind in SIM_KINDS and sim_kind in THEORY_KINDS:
        raise DMFTInputError(
            f"the files are swapped: the first is a {theory_kind} run and the second a "
            f"{sim_kind} run; pass the theory (kind {'/'.join(THEORY_KINDS)}) first and the "
            "simulation second"
        )
    raise DMFTInputError(
        f"compare needs a theory (kind {'/'.join(THEORY_KINDS)}) first and a simulation (kind "
        f"simulation) second; got kinds {theory_kind!r} and {sim_kind!r}"
    )


class Extrapolation(NamedTuple):
    """A fit y(d) = value + slope/d per entry: ``value`` (the d → ∞ limit) with its standard
    error ``error``, ``slope`` and the fit's χ² per degree of freedom ``chi2`` (arrays of the
    entries' shape)."""

    value: np.ndarray
    error: np.ndarray
    slope: np.ndarray
    chi2: np.ndarray


def extrapolate(ds, values, errors) -> Extrapolation:
    """Weighted least-squares fit y = value + slope/d of simulations at the sizes ``ds``,
    entry by entry; ``values``, ``errors``: one array per d (same shapes). Errors below 1e-12
    (exact entries, e.g. m at step 0) are raised to 1e-12, so that they get a finite weight."""
    x = 1.0 / np.asarray(ds, dtype=np.float64)
    y = np.stack([np.asarray(v, dtype=np.float64) for v in values])
    e = np.maximum(np.stack([np.asarray(v, dtype=np.float64) for v in errors]), 1e-12)
    if len(x) < 2 or y.shape[0] != len(x) or e.shape != y.shape:
        raise DMFTInputError(f"extrapolate needs values and errors at >= 2 sizes d, one per d; "
                             f"got {len(x)} sizes, values {y.shape}, errors {e.shape}")
    xs = x.reshape((-1,) + (1,) * (y.ndim - 1))
    w = 1.0 / e**2
    s0, s1, s2 = w.sum(0), (w * xs).sum(0), (w * xs**2).sum(0)
    sy, sxy = (w * y).sum(0), (w * xs * y).sum(0)
    det = s0 * s2 - s1**2
    value = (s2 * sy - s1 * sxy) / det
    slope = (s0 * sxy - s1 * sy) / det
    chi2 = (w * (y - value - slope * xs) ** 2).sum(0) / max(len(x) - 2, 1)
    return Extrapolation(value, np.sqrt(s2 / det), slope, chi2)


def format_ztable(table: ZTable, *, max_columns: int = 16) -> str:
    """The table as text: one row per entry, one column per step, then max |z| and the verdict.

    With more than ``max_columns`` steps, evenly spaced steps are shown (max |z| still uses all).
    """
    n = len(table.step)
    cols = np.arange(n) if n <= max_columns else np.unique(
        np.round(np.linspace(0, n - 1, max_columns)).astype(int))
    width = max(12, max(len(r.label) for r in table.rows) + 2)
    head = f"{'entry':<{width}}" + "".join(f"{'t=' + str(int(table.step[c])):>8}" for c in cols)
    head += f"{'max|z|':>9}"
    sys_txt = f" + {table.sys_error:g}^2" if table.sys_error else ""
    lines = [f"z = (theory - simulation) / sqrt(SE_theory^2 + SE_sim^2{sys_txt})", head,
             "-" * len(head)]
    for r in table.rows:
        cells = "".join(f"{r.z[c]:>8.2f}" for c in cols)  # NaN shows as "nan"
        lines.append(f"{r.label:<{width}}{cells}{r.max_abs_z:>9.2f}")
    lines.append("-" * len(head))
    lines.append(table.verdict())
    return "\n".join(lines)


__all__ = ["zscore_table", "format_ztable", "check_kinds", "ZTable", "ZRow"]
