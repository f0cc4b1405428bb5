"""dmft.optimize: input validation (default suite), an improvement on a tiny case and its HDF5
round trip (slow), and `dmft optimize`'s one-line errors."""

from __future__ import annotations

import numpy as np
import pytest
from _fakes import one_line_error, run_cli

import dmft
from dmft import DMFTInputError


def tiny():
    return dmft.make_problem("he3", p=1, activation="erf", alpha=2.0, lr=0.4, steps=3,
                             schedule="repeat:2")


def test_wrt_and_objective_are_validated():
    pr = tiny()
    with pytest.raises(DMFTInputError, match=r"among \['second_layer', .*'lr'.*\]; got 'eta'"):
        dmft.optimize(pr, wrt=("eta",))
    with pytest.raises(DMFTInputError, match="got 'batch_fraction'"):  # not a Problem field
        dmft.optimize(pr, wrt=("batch_fraction",))
    with pytest.raises(DMFTInputError, match="must not repeat"):
        dmft.optimize(pr, wrt=("lr", "lr"))
    with pytest.raises(DMFTInputError, match="`objective` must be one of"):
        dmft.optimize(pr, "overlap")
    with pytest.raises(DMFTInputError, match="`steps` must be"):
        dmft.optimize(pr, steps=0)
    with pytest.raises(DMFTInputError, match="`learning_rate` must be"):
        dmft.optimize(pr, learning_rate=-1.0)
    with pytest.raises(DMFTInputError, match="optax.GradientTransformation"):
        dmft.optimize(pr, optimizer="adam")


def test_parametrisations_round_trip():
    from dmft._optimize import _from_raw, _to_raw, constraint

    assert [constraint(n) for n in ("lr", "alpha", "noise", "m0", "momentum", "momentum_a")] \
        == ["positive", "positive", "positive", "free", "unit", "unit"]
    x = np.array([1e-3, 0.5, 3.0])
    for kind, vals in (("positive", x), ("unit", x / 4), ("free", -x)):
        np.testing.assert_allclose(np.asarray(_from_raw(kind, _to_raw(kind, vals))), vals,
                                   rtol=1e-12)


def test_cli_one_line_errors(capsys, tmp_path):
    code, _, err = run_cli(capsys, "optimize", "--target", "he3", "--wrt", "lr,eta",
                           "--out", tmp_path / "o.h5")
    assert code == 1
    one_line_error(err, "`--wrt`", "'eta'", "nothing written")
    code, _, err = run_cli(capsys, "optimize", "--target", "he3", "--iterations", "0",
                           "--out", tmp_path / "o.h5")
    assert code == 1
    one_line_error(err, "`--iterations`")
    assert not (tmp_path / "o.h5").exists()


@pytest.mark.slow
def test_optimize_improves_and_round_trips(tmp_path):
    pr = tiny()
    path = tmp_path / "opt.h5"
    res = dmft.optimize(pr, "m_norm", wrt=("lr",), steps=4, samples=4000, replicas=4,
                        learning_rate=0.1, progress=False, out=path)
    h = res.history["objective"]
    assert res.status == "ok" and h.shape == (5,) and res.history["lr"].shape == (5, 3)
    assert h[res.best_iteration] < h[0] - 1e-3  # -||m_T|| decreased
    assert np.all(np.asarray(res.problem.lr) > 0)
    # the optimised problem's own solve reproduces the recorded objective
    f = dmft.solve_fn(res.problem, 4000, seed=0, replicas=4)
    assert -float(f(dmft.numbers(res.problem))["m_norm"][-1]) == pytest.approx(
        h[res.best_iteration], rel=1e-12)
    back = dmft.io.load_optimize(path)
    np.testing.assert_array_equal(back.history["lr"], res.history["lr"])
    np.testing.assert_array_equal(back.history["objective"], h)
    np.testing.assert_allclose(back.problem.lr, res.problem.lr, rtol=0, atol=0)
    assert back.wrt == ("lr",) and back.best_iteration == res.best_iteration
    assert back.initial_problem.to_dict() == pr.to_dict()
    with pytest.raises(DMFTInputError, match="is an optimisation file.*load_optimize"):
        dmft.io.load(path)
    with pytest.raises(DMFTInputError, match="not an optimisation file"):
        dmft.io.save(dmft.solve(pr, 4000, replicas=4, progress=False), tmp_path / "t.h5")
        dmft.io.load_optimize(tmp_path / "t.h5")


@pytest.mark.slow
def test_cli_optimize_writes_file(capsys, tmp_path):
    out = tmp_path / "o.h5"
    code, stdout, err = run_cli(capsys, "optimize", "--target", "he3", "--p", "1",
                                "--activation", "erf", "--steps", "2", "--lr", "0.4",
                                "--iterations", "2", "--samples", "2000", "--replicas", "2",
                                "--no-progress", "--out", out)
    assert code == 0, err
    assert f"wrote {out}" in stdout
    assert dmft.io.load_optimize(out).history["objective"].shape == (3,)
