"""Issue #10, item 4: the step restricted to the live slots (``dmft/solver/_live.py``).

With ``$DMFT_LIVE_COLUMNS`` set, a step loops over blocks of columns of the histories that hold a
slot s <= t instead of one product over all T + 1 slots. The blocks only reorder the float sums,
so every output must equal the full-width solve of the same seed to rounding. The tolerance,
1e-11 relative to each array's largest entry, is ~10⁴ float64 ulps: the largest difference
measured here is ~1e-14 (the ill-conditioned last rows of Γ reach ~1e-12 over T = 50, see
benchmarks/live_slots.py). A block size that misses a slot, or double counts the shifted last
block, moves m by ~1e-3 (seen while writing this), far outside it.
"""

from __future__ import annotations

import numpy as np
import pytest

import dmft
from dmft import DMFTInputError
from dmft.solver._structure import LIVE_COLUMNS_ENV, make_structure

RTOL = 1e-11

CASES = {
    # name: (problem keywords, solve keywords); T1 = 13 slots, p = 2: 4 columns = 2 slots per
    # block, 7 blocks, the last one shifted left by a slot
    "reuse": (dict(target="tanh_he3", p=2, activation="relu", steps=12), {}),
    "reuse_chunked_padded": (dict(target="tanh_he3", p=2, activation="relu", steps=12),
                             dict(samples=3002, chunk_size=700)),
    "repeat3_pathwise": (dict(target="tanh_he3", p=2, activation="tanh", steps=12,
                              schedule="repeat:3"), dict(response="pathwise")),
    "fresh": (dict(target="tanh_he3", p=2, activation="relu", steps=12, schedule="fresh"), {}),
    "sgd_trained_a": (dict(target="tanh_he3", p=2, activation="relu", steps=12,
                           schedule="sgd:0.5", lr_a=0.1, noise=0.1, ridge=0.01), {}),
    "epochs_p3": (dict(target="he3", p=3, activation="relu", steps=12, schedule="epochs:3"), {}),
}


def solve(problem_kw, solve_kw, monkeypatch, columns, dtype="float64"):
    monkeypatch.setenv(LIVE_COLUMNS_ENV, str(columns))
    pr = dmft.make_problem(alpha=3.0, lr=0.3, **problem_kw)
    kw = dict(samples=4000, seed=5, replicas=2, progress=False, dtype=dtype)
    kw.update(solve_kw)
    return dmft.solve(pr, **kw)


def assert_same(a, b, rtol=RTOL):
    for name in ("m", "Q", "test_error", "train_loss", "C", "Gamma"):
        x, y = (np.asarray(getattr(r, name).value if hasattr(r, name) else r.kernels[name].value)
                for r in (a, b))
        scale = max(float(np.max(np.abs(x))), 1e-300)
        err = float(np.max(np.abs(x - y))) / scale
        assert err <= rtol, (name, err)


# the default suite runs the reuse case with chunks and padding (each case compiles two solves,
# ~3-5 s each on the 2-core CI machine, whose 10-minute budget is nearly spent); the general
# schedule with the pathwise response, fresh, sgd + trained a, plain reuse, p = 3 epochs, float32
# and the one-block program run with -m slow
SLOW = {"reuse", "epochs_p3", "fresh", "sgd_trained_a", "repeat3_pathwise"}


@pytest.mark.parametrize("name", [pytest.param(n, marks=pytest.mark.slow) if n in SLOW else n
                                  for n in sorted(CASES)])
def test_live_blocks_equal_full_width(name, monkeypatch):
    problem_kw, solve_kw = CASES[name]
    full = solve(problem_kw, solve_kw, monkeypatch, 0)
    blocked = solve(problem_kw, solve_kw, monkeypatch, 4)
    assert_same(full, blocked)
    # and the blocks did change the program (the structure is part of the compile key)
    pr = dmft.make_problem(alpha=3.0, lr=0.3, **problem_kw)
    monkeypatch.setenv(LIVE_COLUMNS_ENV, "4")
    st = make_structure(pr, 4000, 4000, "stein", "float64")
    assert st.slot_block == 4 // problem_kw["p"] and st.slot_block < st.T1


@pytest.mark.slow
def test_live_blocks_float32_equal_full_width(monkeypatch):
    """The mixed-precision float32 solve (float32 histories, float64 sums): same to float32
    rounding of the products, ~1e-7 relative; allowed 1e-5."""
    problem_kw, solve_kw = CASES["reuse"]
    full = solve(problem_kw, solve_kw, monkeypatch, 0, dtype="float32")
    blocked = solve(problem_kw, solve_kw, monkeypatch, 6, dtype="float32")
    assert_same(full, blocked, rtol=1e-5)


@pytest.mark.slow
def test_one_block_is_the_full_width_program(monkeypatch):
    """A block as wide as every slot is the plain product: bitwise the default solve."""
    problem_kw, solve_kw = CASES["reuse"]
    full = solve(problem_kw, solve_kw, monkeypatch, 0)
    wide = solve(problem_kw, solve_kw, monkeypatch, 1000)
    for name in ("m", "Q"):
        np.testing.assert_array_equal(getattr(full, name).value, getattr(wide, name).value)
    np.testing.assert_array_equal(full.kernels["Gamma"].value, wide.kernels["Gamma"].value)


@pytest.mark.parametrize("raw", ["-1", "abc", "2.5"])
def test_bad_live_columns_is_refused_before_compute(raw, monkeypatch):
    monkeypatch.setenv(LIVE_COLUMNS_ENV, raw)
    pr = dmft.make_problem("tanh_he3", p=2, activation="relu", alpha=3.0, lr=0.3, steps=3)
    with pytest.raises(DMFTInputError, match=LIVE_COLUMNS_ENV + ".*integer >= 0"):
        dmft.solve(pr, 1000, replicas=2, progress=False)
