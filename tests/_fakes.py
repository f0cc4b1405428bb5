"""Small hand-built trajectories for I/O, plotting and CLI tests (no solver run needed), and
the helpers of the command-line tests."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from dmft import Estimate, Trajectory
from dmft.model import make_problem


def fake_trajectory(kind: str = "dmft", steps: int = 3, seeds: int = 4, seed: int = 0,
                    target: str = "tanh_he3", p: int = 2, shift: float = 0.0) -> Trajectory:
    """A trajectory with smooth made-up values and positive errors, shaped like the real ones."""
    problem = make_problem(target, p=p, steps=steps, alpha=3.0, lr=0.2)
    rng = np.random.default_rng(seed)
    T1, k = steps + 1, problem.k
    t = np.arange(T1, dtype=np.float64)
    m = 0.05 * t[:, None, None] * np.arange(1, p * k + 1).reshape(p, k) / (p * k) + shift
    Q = np.eye(p)[None] * (1.0 - 0.03 * t[:, None, None]) + 0.01 * t[:, None, None]
    eg = 0.42 - 0.02 * t + shift
    tl = 0.42 - 0.04 * t + shift

    def est(x, sd=1e-3):
        return Estimate(x + sd * rng.standard_normal(x.shape), np.full(x.shape, sd))

    kw = {}
    if kind == "dmft":
        kw["kernels"] = {
            name: est(rng.standard_normal((T1, T1, p, p))) for name in ("Qperp", "C", "Gamma", "R")
        }
        kw["diagnostics"] = {"min_schur_eig": np.linspace(1.0, 0.5, T1), "jitter": np.zeros(T1)}
        settings = dict(samples=3200, replicas=16, seed=seed, chunk_size=None, response="stein",
                        dtype="float64", wall_time_s=0.1)
    else:
        kw["per_seed"] = {
            "m": m[None] + 1e-2 * rng.standard_normal((seeds,) + m.shape),
            "Q": Q[None] + 1e-2 * rng.standard_normal((seeds,) + Q.shape),
            "test_error": eg[None] + 1e-2 * rng.standard_normal((seeds, T1)),
            "train_loss": tl[None] + 1e-2 * rng.standard_normal((seeds, T1)),
        }
        settings = dict(d=300, n=900, seeds=seeds, seed=seed, test_error="exact", dtype="float64")
    return Trajectory(kind=kind, problem=problem, step=np.arange(T1), m=est(m), Q=est(Q),
                      test_error=est(eg), train_loss=est(tl), settings=settings, **kw)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------

ROOT = Path(__file__).resolve().parent.parent  # the repository (for subprocesses)


def run_cli(capsys, *argv) -> tuple[int, str, str]:
    """``dmft ARGV...`` in this process: (exit code, stdout, stderr)."""
    from dmft.cli import main

    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line_error(err: str, *words: str) -> str:
    """Assert that ``err`` (warnings aside) is one line ``error: ...`` with no traceback and
    containing every one of ``words``; return that line."""
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def subprocess_env(**extra: str) -> dict:
    """The environment of a ``python -m dmft.cli`` subprocess: this checkout first on the path."""
    path = str(ROOT) + os.pathsep + os.environ.get("PYTHONPATH", "")
    return dict(os.environ, PYTHONPATH=path, **extra)
