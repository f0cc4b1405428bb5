"""Shared helpers of the claim studies in ``validation/claims/`` (Dandi et al. 2024).

Norms of overlaps with honest standard errors, runs that survive a divergence (one solve, or a
whole grid in one ``dmft.sweep``), an atomic JSON writer and a compact table printer. The studies
import this module from their own folder.

Standard error of a norm. A run gives the entries of m (p×k) as a mean with a standard error
per entry (DMFT: over replicas; simulation: over seeds). We report ‖m̄‖ (the Frobenius norm of the
mean) with the error bound SE = sqrt(Σ_ij SE_ij²): by the triangle inequality
|‖m̄‖ − ‖m‖| ≤ ‖m̄ − m‖ and E‖m̄ − m‖² = Σ SE_ij². It is conservative (by up to √(pk) when the
signal sits in one entry), so "‖m̄‖ > 4 SE" is a safe test of m ≠ 0: under m = 0,
‖m̄‖²/SE² is about χ²_{pk}/(pk), whose chance of exceeding 16 is negligible.
For the simulation we also report the seed mean of the per-seed norm ‖m^{(s)}‖, which carries
the finite-d noise floor (about 1/√d) even when m = 0.
"""

from __future__ import annotations

import argparse
import json
import math
import os
import time
import warnings

import numpy as np

import dmft
from dmft.observables import DERIVED


def norm_estimate(m_est):
    """(‖mean‖, conservative SE) of an Estimate (T+1, p, k): the package's ``m_norm``."""
    v, e = DERIVED["m_norm"].derive({"m": (np.asarray(m_est.value, dtype=float),
                                          np.asarray(m_est.error, dtype=float))})
    return v, e


def _norm(v, axis):
    return np.sqrt(np.sum(v**2, axis=axis))


def column_norm_estimate(m_est):
    """Per target direction i: ‖m_{:,i}‖ and its conservative SE; shapes (T+1, k)."""
    v = np.asarray(m_est.value, dtype=float)
    e = np.asarray(m_est.error, dtype=float)
    return _norm(v, -2), np.sqrt(np.sum(e**2, axis=-2))


def per_seed_norm(sim, axis=(-2, -1)):
    """Simulation: seed mean of the per-seed norm ‖m^{(s)}_t‖ and its SE (with the noise floor)."""
    ms = np.asarray(sim.per_seed["m"], dtype=float)  # (S, T+1, p, k)
    n = _norm(ms, tuple(a if a < 0 else a + 1 for a in axis))  # (S, T+1[, k])
    s = n.shape[0]
    return n.mean(0), (n.std(0, ddof=1) / math.sqrt(s) if s > 1 else np.full(n.shape[1:], np.nan))


def _guarded(run, **kwargs):
    """Run ``run(**kwargs)``; on DivergenceError keep the partial trajectory.

    Returns (trajectory, status, seconds).
    """
    t0 = time.perf_counter()
    try:
        traj, status = run(progress=False, **kwargs), "ok"
    except dmft.DivergenceError as exc:
        traj, status = exc.partial, f"diverged at step {exc.step}"
    return traj, status, time.perf_counter() - t0


def run_dmft(problem, samples, seed, replicas=16):
    """DMFT solve (partial trajectory on divergence): (traj, status, seconds)."""
    return _guarded(dmft.solve, problem=problem, samples=samples, seed=seed, replicas=replicas)


def run_sweep(problem, over, samples, seed, replicas=16):
    """DMFT of every point of a grid in one ``dmft.sweep`` (one compilation, common random
    numbers: every point uses ``seed``, like ``run_dmft`` of that point).

    Returns (sweep result, [(traj, status, seconds) per point in C order over the axes]): a
    diverged point keeps its partial trajectory (up to its first bad step) and the status
    "diverged at step k", as ``run_dmft`` gives; seconds is the sweep's time over its points.
    The studies' own blow-up test (``blowup``: mean diag Q > 100) applies as for ``run_dmft``.
    """
    t0 = time.perf_counter()
    with warnings.catch_warnings():  # "k of n grid points diverged": reported per point
        warnings.simplefilter("ignore", RuntimeWarning)
        res = dmft.sweep(problem, over, samples, seed=seed, replicas=replicas, progress=False)
    sec = (time.perf_counter() - t0) / len(res.points)
    return res, [(tr, _status(tr), sec) for tr in res.points]


def _status(tr):
    """A sweep point's status in run_dmft's words ("ok", "diverged at step k"); other states
    (e.g. "blew_up" where the package marks blow-ups) keep their name and step."""
    if tr.status == "ok":
        return "ok"
    word = "diverged" if tr.status == "diverged" else str(tr.status)
    return f"{word} at step {tr.first_bad_step}"


def run_sim(problem, d, seeds, seed):
    """Simulation (partial trajectory on divergence): (traj, status, seconds)."""
    return _guarded(dmft.simulate, problem=problem, d=d, seeds=seeds, seed=seed)


def blowup(traj, limit=100.0):
    """True when the mean diagonal of Q exceeds ``limit`` at some step (numerical blow-up)."""
    if traj is None or len(traj.step) == 0:
        return False
    q = np.asarray(traj.Q.value)
    diag = np.einsum("tii->ti", q).mean(-1)
    return bool(np.any(~np.isfinite(diag)) or np.any(diag > limit))


def fmt(v, e=None, digits=4):
    """'v ± e' with a fixed number of decimals; NaN shown as '—'."""
    if v is None or (isinstance(v, float) and not math.isfinite(v)):
        return "—"
    if e is None:
        return f"{v:.{digits}f}"
    return f"{v:.{digits}f}±{e:.{digits}f}"


def print_table(header, rows):
    """Print rows (lists of strings) as a fixed-width table."""
    cols = list(zip(header, *rows))
    widths = [max(len(str(c)) for c in col) for col in cols]
    line = "  ".join(str(h).rjust(w) for h, w in zip(header, widths))
    print(line)
    print("-" * len(line))
    for r in rows:
        print("  ".join(str(c).rjust(w) for c, w in zip(r, widths)))


def _clean(obj):
    if isinstance(obj, dict):
        return {str(k): _clean(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [_clean(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return _clean(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        f = float(obj)
        return f if math.isfinite(f) else None
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj


def write_json(path, data):
    """Write ``data`` as JSON atomically (temporary file in the same folder, then os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(_clean(data), f, indent=1, sort_keys=False)
        f.write("\n")
        f.flush()
        os.fsync(f.fileno())
    os.replace(tmp, path)
    return path


def save_png(fig, path, dpi=150):
    """Save a figure atomically (temporary file, then os.replace)."""
    folder = os.path.dirname(os.path.abspath(path))
    os.makedirs(folder, exist_ok=True)
    tmp = f"{path}.tmp.{os.getpid()}.png"
    fig.savefig(tmp, dpi=dpi)
    os.replace(tmp, path)
    return path


def base_parser(doc: str) -> argparse.ArgumentParser:
    """The flags every claims script shares: --quick --samples --d --seeds --seed."""
    ap = argparse.ArgumentParser(description=doc.split("\n\n")[0])
    ap.add_argument("--quick", action="store_true", help="seconds-long smoke sizes")
    ap.add_argument("--samples", type=int, default=None, help="DMFT effective samples")
    ap.add_argument("--d", type=int, default=None, help="simulation dimension")
    ap.add_argument("--seeds", type=int, default=None, help="simulation seeds")
    ap.add_argument("--seed", type=int, default=0)
    return ap
