"""Failures of results and of the library entry points: one clear message before the compute,
partial results kept, blow-ups marked, kernels of zero length handled (file reading is tested in
tests/io/, the command line in tests/cli/)."""

from __future__ import annotations

import os

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _fakes import fake_trajectory

import dmft
from dmft import DivergenceError, DMFTInputError, io
from dmft._result import BLOWUP_RATIO, blowup_step, kernel_diagonal, mark_blowup
from dmft.model import Target, custom_target, make_problem

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def subprocess_env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    th, sim = d / "dmft.h5", d / "sim.h5"
    io.save(fake_trajectory("dmft", steps=3), th)
    io.save(fake_trajectory("simulation", steps=3, shift=0.0005, seed=1), sim)
    return th, sim


# a run that is non-finite at step 0 -------------------------------------------------------


def test_custom_target_nan_somewhere_refused():
    with pytest.raises(DMFTInputError, match=r"returns NaN or inf on \d+ of 512 standard-normal"):
        custom_target(lambda z: jnp.sqrt(z[..., 0]), k=1)


def test_kernel_diagonal_handles_zero_steps():
    K = np.arange(2 * 3 * 3 * 2 * 2, dtype=float).reshape(2, 3, 3, 2, 2)
    np.testing.assert_array_equal(kernel_diagonal(K), np.einsum("rttqv->rtqv", K))
    assert kernel_diagonal(K[:, :0, :0]).shape == (2, 0, 2, 2)


# --out is checked before any compute -------------------------------------------------------


# compare / inspect: figure arguments and damaged files ------------------------------------


def test_save_figure_api_checks(tmp_path):
    import matplotlib.pyplot as plt

    from dmft.plot import save_figure

    fig = plt.figure()
    try:
        for path, dpi, pattern in [(tmp_path / "c_noext", 100, r"`path` must end in one of"),
                                   (tmp_path / "c.xyz", 100, r"got path=.*c\.xyz"),
                                   (tmp_path / "c.png", 0, r"`dpi` must be an integer")]:
            with pytest.raises(DMFTInputError, match=pattern):
                save_figure(fig, path, dpi=dpi)
        assert os.listdir(tmp_path) == []
    finally:
        plt.close(fig)


# a NaN-producing target in simulate names the target ----------------------------------------


def test_simulate_nan_target_names_target(tmp_path):
    # NaN on every batch the probe (512 rows) does not see: passes construction, fails the run
    tgt = Target("rare_nan", 1, lambda z: jnp.where(z.shape[0] == 512, z[..., 0], jnp.nan),
                 "test")
    problem = make_problem(tgt, steps=2)
    with pytest.raises(DivergenceError) as info:
        dmft.simulate(problem, d=40, seeds=2, progress=False)
    msg = str(info.value)
    assert "at step 0" in msg and "the target 'rare_nan' returns NaN or inf" in msg
    assert "learning rate" not in msg


# raw exceptions that did not name the argument --------------------------------------------


def test_arguments_named():
    with pytest.raises(DMFTInputError, match=r"`lr` must be a number or 4 numbers"):
        make_problem("he3", steps=4, lr=["a", "b", "c", "d"])
    with pytest.raises(DMFTInputError, match=r"`dtype` must be one of \['float32', 'float64'\]; "
                                             r"got dtype='abc'"):
        dmft.solve(make_problem("he3", steps=2), 640, replicas=4, dtype="abc")
    with pytest.raises(DMFTInputError, match=r"target function `wide` must map shape"):
        make_problem(Target("wide", 1, lambda z: jnp.stack([z[..., 0]] * 2, -1), "x"))
    with pytest.raises(DMFTInputError, match=r"`numpy_user` is not JAX-traceable"):
        custom_target(lambda z: np.asarray(z)[..., 0], k=1, name="numpy_user")
    with pytest.raises(DMFTInputError, match=r"`traj` must be a dmft.Trajectory .*got dict"):
        io.save({"m": 1}, "unused.h5")




# solve_online refuses float64 when x64 is off ---------------------------------------------


def test_online_refuses_without_x64():
    problem = make_problem("he3", steps=2)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(DMFTInputError, match="x64 mode is off"):
            dmft.solve_online(problem, 1.0)
    finally:
        jax.config.update("jax_enable_x64", True)


# blow-up criterion ------------------------------------------------------------------------


def test_blowup_criterion_unit():
    Q = np.eye(2)[None] * np.array([1.0, 10.0, 0.9e6, 2e6])[:, None, None]
    assert blowup_step(Q) == 3
    Q10 = Q.copy()
    Q10[0] *= 10
    assert blowup_step(Q10) == -1  # relative to the initial scale (here 10)
    traj = fake_trajectory("simulation")
    traj.Q = traj.Q._replace(value=np.asarray(traj.Q.value) * np.array(
        [1, 1, 1, 2 * BLOWUP_RATIO])[:, None, None])
    with pytest.warns(RuntimeWarning, match="blew up at step 3"):
        mark_blowup(traj)
    assert (traj.status, traj.first_bad_step) == ("blew_up", 3)


def test_solve_api_marks_blowup():
    problem = make_problem("he3", alpha=2.0, lr=4.0, steps=10)
    with pytest.warns(RuntimeWarning, match="blew up"):
        traj = dmft.solve(problem, 2000, replicas=4, progress=False)
    assert traj.status == "blew_up"


