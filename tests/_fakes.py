"""Shared test helpers: small hand-built trajectories for I/O, plotting and CLI tests (no solver
run needed), and the environment for running this checkout in a subprocess."""

from __future__ import annotations

import os

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


ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def subprocess_env() -> dict:
    """``os.environ`` with this checkout first on ``PYTHONPATH``, so that a child Python
    imports the ``dmft`` under test."""
    path = [ROOT] + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]
    return dict(os.environ, PYTHONPATH=os.pathsep.join(path))
