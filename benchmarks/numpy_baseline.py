"""BASELINE ONLY: a plain-numpy forward DMFT (docs/THEORY.md §2), written as one-off scripts
do it.

This file is *not* part of the ``dmft`` package. It exists so that ``benchmarks/dmft_speed.py``
has something to compare ``dmft.solve`` against, and as an independent reimplementation of the
same equations (``python benchmarks/numpy_baseline.py --check`` compares the two).

What it does (float64, square loss, reuse schedule, Stein response):

* one single process of N effective samples (no replicas, hence no error bars);
* causal w: standard normals z (N, T+1, p) drawn up front, w_{0:t} = L z_{0:t} with L the lower
  block-Cholesky factor of Q⊥, one block row appended per step (numpy.linalg; a Schur complement
  that is not positive definite is eigenvalue-clipped and the clip is reported);
* Stein response Γ(t, 0:t) = α E[(g_t − E g_t) z_{0:t}ᵀ] L^{-1};
* weight side R, R₀, Q⊥, m as in docs/THEORY.md §2.2.

The characteristic (and deliberately kept) baseline design: the reaction coefficients
η_s R(t, s) are stored **per sample** in a dense array of shape N × (T+1) × (T+1) × p × p that is
allocated up front (the published script kept such an array so that per-sample kernels could be
used), and the reaction sum Σ_s η_s R(t,s) g_s is an einsum over that per-sample array. Its memory
is O(N T² p²) (np.zeros is lazily committed, so the resident part is the lower triangle that
actually gets written: ≈ half of N (T+1)² p² · 8 bytes). The mathematics is identical to using
one shared (T+1, T+1, p, p) kernel.

This module imports only numpy (scipy only for the erf activation), so that its memory footprint
is not inflated by importing JAX.
"""

from __future__ import annotations

import math
import time

import numpy as np

# ------------------------------------------------------------------------------------------
# numpy versions of the model pieces (same definitions as dmft/model)
# ------------------------------------------------------------------------------------------


def _relu(h):
    return np.maximum(h, 0.0)


def _relu_d(h):
    return (h > 0).astype(h.dtype)


def _erf(h):
    from scipy.special import erf

    return erf(h / math.sqrt(2.0))


def _erf_d(h):
    return math.sqrt(2.0 / math.pi) * np.exp(-0.5 * h * h)


ACTIVATIONS_NP = {
    "relu": (_relu, _relu_d),
    "erf": (_erf, _erf_d),
    "tanh": (np.tanh, lambda h: 1.0 - np.tanh(h) ** 2),
    "linear": (lambda h: h, np.ones_like),
    "quadratic": (lambda h: h * h, lambda h: 2.0 * h),
}


def _he(j, z):
    return {1: z, 2: z * z - 1.0, 3: z**3 - 3.0 * z, 4: z**4 - 6.0 * z * z + 3.0}[j]


TARGETS_NP = {
    "linear": (1, lambda z: z[:, 0]),
    "he2": (1, lambda z: _he(2, z[:, 0]) / math.sqrt(2.0)),
    "he3": (1, lambda z: _he(3, z[:, 0]) / math.sqrt(6.0)),
    "he4": (1, lambda z: _he(4, z[:, 0]) / math.sqrt(24.0)),
    "tanh_he3": (2, lambda z: np.tanh(z[:, 0] + z[:, 1] ** 3 - 3.0 * z[:, 1])),
    "z1_plus_he3": (2, lambda z: z[:, 0] + _he(3, z[:, 1]) / math.sqrt(6.0)),
    "staircase2": (2, lambda z: z[:, 0] + z[:, 0] * z[:, 1]),
    "staircase3": (3, lambda z: z[:, 0] + z[:, 0] * z[:, 1] + z[:, 0] * z[:, 1] * z[:, 2]),
    "z1z2z3": (3, lambda z: z[:, 0] * z[:, 1] * z[:, 2]),
    "sign_z1z2z3": (3, lambda z: np.sign(z[:, 0] * z[:, 1] * z[:, 2])),
}


def dense_response_bytes(samples: int, steps: int, p: int) -> int:
    """Bytes of the dense per-sample response array N (T+1)² p² float64 (virtual size)."""
    return 8 * samples * (steps + 1) ** 2 * p * p


# ------------------------------------------------------------------------------------------
# the baseline solver
# ------------------------------------------------------------------------------------------


def numpy_dmft(
    target="tanh_he3",
    *,
    p=2,
    activation="relu",
    second_layer="alternating",
    alpha=3.0,
    lr=0.2,
    steps=6,
    noise=0.0,
    ridge=0.0,
    m0=None,
    qperp0=None,
    samples=100_000,
    seed=0,
    floor_rel=1e-10,
):
    """Forward DMFT of docs/THEORY.md §2 in plain numpy (BASELINE; see the module docstring).

    ``target`` is a name of ``TARGETS_NP`` or a pair ``(k, fn)`` with ``fn`` mapping an (N, k)
    numpy array to (N,). Returns a dict with ``m`` (T+1, p, k), ``Q`` (T+1, p, p), ``Qperp``,
    ``C``, ``Gamma``, ``R`` ((T+1, T+1, p, p)), ``train_loss`` (T+1,), ``jitter`` (T+1,) and
    ``time_s``.
    """
    t_start = time.perf_counter()
    k, gstar = TARGETS_NP[target] if isinstance(target, str) else target
    sig, dsig = ACTIVATIONS_NP[activation]
    if isinstance(second_layer, str):
        if second_layer == "alternating":
            a = np.array([(-1.0) ** j for j in range(p)]) / math.sqrt(p)
        else:
            a = np.ones(p) / math.sqrt(p)
    else:
        a = np.asarray(second_layer, dtype=np.float64)
    T1 = steps + 1
    eta = np.zeros(T1)
    eta[:steps] = lr  # scalar or length-steps schedule; eta[T] is never used
    m0 = np.zeros((p, k)) if m0 is None else np.asarray(m0, dtype=np.float64)
    q0 = np.eye(p) if qperp0 is None else np.asarray(qperp0, dtype=np.float64)
    N = int(samples)

    rng = np.random.default_rng(seed)
    z = rng.standard_normal((N, T1, p))
    hstar = rng.standard_normal((N, k))
    y = gstar(hstar) + math.sqrt(noise) * rng.standard_normal(N)

    # the dense per-sample response storage, allocated up front (the baseline's design)
    resp = np.zeros((N, T1, T1, p, p))
    g = np.zeros((N, T1, p))

    m = np.zeros((T1, p, k))
    m[0] = m0
    Qp = np.zeros((T1, T1, p, p))
    Qp[0, 0] = q0
    C = np.zeros((T1, T1, p, p))
    Gam = np.zeros((T1, T1, p, p))
    R = np.zeros((T1, T1, p, p))  # R(t, s), nonzero for s < t
    R0 = np.zeros((T1, p, p))
    R0[0] = np.eye(p)
    L = np.zeros((T1 * p, T1 * p))
    train_loss = np.zeros(T1)
    jitter = np.zeros(T1)

    for t in range(T1):
        tp, tq = t * p, (t + 1) * p
        # ---- append block row t of the Cholesky factor of Q⊥ on times 0..t
        if t == 0:
            Lrow = np.zeros((p, 0))
        else:
            B = np.concatenate([Qp[t, s] for s in range(t)], axis=1)  # (p, t p): Q⊥(t, s)
            Lrow = np.linalg.solve(L[:tp, :tp], B.T).T
        S = Qp[t, t] - Lrow @ Lrow.T
        ev, U = np.linalg.eigh(0.5 * (S + S.T))
        ev_c = np.maximum(ev, floor_rel * max(np.trace(Qp[t, t]) / p, 1e-300))
        jitter[t] = np.max(ev_c - ev)
        L[tp:tq, :tp] = Lrow
        L[tp:tq, tp:tq] = np.linalg.cholesky((U * ev_c) @ U.T)

        # ---- sample side
        zt = z[:, : t + 1].reshape(N, tq)
        w = zt @ L[tp:tq, :tq].T  # (N, p)
        if t > 0:
            # per-sample copy of the reaction coefficients η_s R(t, s), s < t
            resp[:, t, :t] = eta[:t, None, None] * R[t, :t]
            react = np.einsum("nsqr,nsr->nq", resp[:, t, :t], g[:, :t])
        else:
            react = 0.0
        h = w - react + hstar @ m[t].T
        f = sig(h) @ a
        gt = (f - y)[:, None] * a * dsig(h)
        g[:, t] = gt
        train_loss[t] = np.mean(0.5 * (y - f) ** 2)

        C_row = alpha * np.einsum("nq,nsr->sqr", gt, g[:, : t + 1]) / N
        for s in range(t + 1):
            C[t, s] = C_row[s]
            C[s, t] = C_row[s].T
        # Stein: Γ(t, 0:t) = α E[(g_t − E g_t) z_{0:t}ᵀ] L^{-1}
        Mz = alpha * (gt - gt.mean(axis=0)).T @ zt / N  # (p, (t+1) p)
        G_flat = np.linalg.solve(L[:tq, :tq].T, Mz.T).T
        for s in range(t + 1):
            Gam[t, s] = G_flat[:, s * p : (s + 1) * p]

        if t + 1 == T1:
            break
        # ---- weight side
        decay = 1.0 - eta[t] * ridge
        m[t + 1] = decay * m[t] - eta[t] * alpha * (gt.T @ hstar) / N
        for s in range(t + 1):
            R[t + 1, s] = decay * R[t, s]
            for u in range(s + 1, t + 1):
                R[t + 1, s] -= eta[t] * Gam[t, u] @ R[u, s]
        R[t + 1, t] = np.eye(p)
        R0[t + 1] = decay * R0[t] - eta[t] * sum(Gam[t, s] @ R0[s] for s in range(t + 1))
        # Q⊥(t+1, t') = R0(t+1) Q0 R0(t')ᵀ + A(t+1) C A(t')ᵀ,  A(t) = [η_s R(t, s)]_s (p × T1 p)
        Cflat = C.transpose(0, 2, 1, 3).reshape(T1 * p, T1 * p)

        def A(tt):
            return np.concatenate([eta[s] * R[tt, s] for s in range(T1)], axis=1)

        A1 = A(t + 1)
        for t2 in range(t + 2):
            Qp[t + 1, t2] = R0[t + 1] @ q0 @ R0[t2].T + A1 @ Cflat @ A(t2).T
            Qp[t2, t + 1] = Qp[t + 1, t2].T

    Q = np.einsum("tqk,tvk->tqv", m, m) + np.stack([Qp[t, t] for t in range(T1)])
    return {
        "m": m,
        "Q": Q,
        "Qperp": Qp,
        "C": C,
        "Gamma": Gam,
        "R": R,
        "train_loss": train_loss,
        "jitter": jitter,
        "time_s": time.perf_counter() - t_start,
    }


def numpy_dmft_from_problem(problem, samples, seed=0):
    """Run the baseline on a ``dmft.Problem`` (reuse schedule, registered target)."""
    if problem.schedule != "reuse":
        raise ValueError("the numpy baseline implements the reuse schedule only")
    return numpy_dmft(
        problem.target.name,
        p=problem.p,
        activation=problem.activation,
        second_layer=np.asarray(problem.second_layer),
        alpha=float(problem.alpha),
        lr=np.asarray(problem.lr),
        steps=problem.steps,
        noise=float(problem.noise),
        ridge=float(problem.ridge),
        m0=np.asarray(problem.m0),
        qperp0=np.asarray(problem.qperp0),
        samples=samples,
        seed=seed,
    )


# ------------------------------------------------------------------------------------------
# agreement check against dmft.solve
# ------------------------------------------------------------------------------------------


def _check(samples: int, seeds: int, solve_replicas: int) -> None:
    import jax

    jax.config.update("jax_enable_x64", True)
    import dmft

    pr = dmft.make_problem("tanh_he3", p=2, activation="relu", second_layer="alternating",
                           alpha=3.0, lr=0.2, steps=6)
    runs = [numpy_dmft_from_problem(pr, samples, seed=s) for s in range(seeds)]
    bm = np.stack([r["m"][:, 0, 0] for r in runs])
    bq = np.stack([r["Q"][:, 0, 0] for r in runs])
    tr = dmft.solve(pr, samples, seed=0, replicas=solve_replicas, progress=False)
    dm, dme = tr.m.value[:, 0, 0], tr.m.error[:, 0, 0]
    dq, dqe = tr.Q.value[:, 0, 0], tr.Q.error[:, 0, 0]
    spec = {1: (0.0759, 0.8535), 3: (0.1567, 0.7897), 6: (0.2150, 0.8130)}
    print(f"tanh_he3, relu, alternating, alpha=3, eta=0.2, T=6, p=2; N={samples}")
    print(f"baseline: mean ± SE over {seeds} independent seeds of N samples each; dmft.solve: "
          f"seed 0, replicas={solve_replicas}, value ± SE over replicas")
    print(f"baseline time per run: {np.mean([r['time_s'] for r in runs]):.2f} s; "
          f"dmft.solve wall (incl. compile): {tr.settings['wall_time_s']:.2f} s")
    hdr = (f"{'t':>2} | {'m00 base':>9} {'SE':>7} | {'m00 dmft':>9} {'SE':>7} {'z':>6} | "
           f"{'Q00 base':>9} {'SE':>7} | {'Q00 dmft':>9} {'SE':>7} {'z':>6} | spec m, Q (N=4e6)")
    print(hdr)
    print("-" * len(hdr))
    for t in range(pr.steps + 1):
        mb, qb = bm[:, t].mean(), bq[:, t].mean()
        se_m = bm[:, t].std(ddof=1) / math.sqrt(seeds) if seeds > 1 else 0.0
        se_q = bq[:, t].std(ddof=1) / math.sqrt(seeds) if seeds > 1 else 0.0
        den_m, den_q = math.hypot(dme[t], se_m), math.hypot(dqe[t], se_q)
        zm = (mb - dm[t]) / den_m if den_m > 0 else 0.0
        zq = (qb - dq[t]) / den_q if den_q > 0 else 0.0
        ref = spec.get(t)
        ref_s = f"{ref[0]:.4f}, {ref[1]:.4f}" if ref else ""
        print(f"{t:>2} | {mb:9.5f} {se_m:7.1e} | {dm[t]:9.5f} {dme[t]:7.1e} {zm:6.2f} | "
              f"{qb:9.5f} {se_q:7.1e} | {dq[t]:9.5f} {dqe[t]:7.1e} {zq:6.2f} | {ref_s}")
    print("z = (baseline mean − dmft) / sqrt(SE_baseline² + SE_dmft²)")
    print(f"max jitter (baseline): {max(r['jitter'].max() for r in runs):.1e}")


if __name__ == "__main__":
    import argparse

    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--check", action="store_true", help="compare with dmft.solve")
    ap.add_argument("--samples", type=int, default=400_000)
    ap.add_argument("--seeds", type=int, default=4, help="baseline repeats (for its spread)")
    ap.add_argument("--replicas", type=int, default=16)
    args = ap.parse_args()
    if args.check:
        _check(args.samples, args.seeds, args.replicas)
    else:
        out = numpy_dmft(samples=args.samples)
        print("m[t,0,0]", np.round(out["m"][:, 0, 0], 5))
        print("Q[t,0,0]", np.round(out["Q"][:, 0, 0], 5))
        print(f"time {out['time_s']:.2f} s")
