"""Issue #14: every failure a clear one-line message, before the compute, and a compare verdict
that cannot pass garbage. One test (or more) per numbered item of the issue (the file-reading
items are in tests/io/)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time

import h5py
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from _fakes import fake_trajectory

import dmft
from dmft import DivergenceError, DMFTInputError, io
from dmft._result import BLOWUP_RATIO, blowup_step, kernel_diagonal, mark_blowup
from dmft.cli._main import build_parser, main, problem_from_args, save_or_partial
from dmft.model import Target, custom_target, make_problem

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def run(capsys, *argv):
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def one_line(err: str, *words: str) -> str:
    lines = [ln for ln in err.strip().splitlines() if not ln.startswith("warning:")]
    assert len(lines) == 1, err
    assert lines[0].startswith("error: ") and "Traceback" not in err, err
    for w in words:
        assert w in lines[0], (w, lines[0])
    return lines[0]


def subprocess_env():
    return dict(os.environ, PYTHONPATH=ROOT + os.pathsep + os.environ.get("PYTHONPATH", ""))


@pytest.fixture(scope="module")
def pair(tmp_path_factory):
    d = tmp_path_factory.mktemp("pair")
    th, sim = d / "dmft.h5", d / "sim.h5"
    io.save(fake_trajectory("dmft", steps=3), th)
    io.save(fake_trajectory("simulation", steps=3, shift=0.0005, seed=1), sim)
    return th, sim


def copy_with(src, dst, edit):
    """Copy a saved file, then let ``edit(h5py.File)`` damage it."""
    with open(src, "rb") as a, open(dst, "wb") as b:
        b.write(a.read())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


# 1. compare fails on NaN and explains NaN standard errors --------------------------------------


def test_item01_compare_fails_on_nan_theory_value(pair, tmp_path, capsys):
    th, sim = pair

    def nan_m(f):
        f["m/value"][...] = np.nan

    bad = copy_with(th, tmp_path / "nan.h5", nan_m)
    code, out, err = run(capsys, "compare", bad, sim)
    assert code == 0 and "PASS" not in out
    assert "FAIL: 4 compared entries have NaN/inf: m[0,0]: theory value is NaN/inf at t=0,1,2,3" \
        in out
    code, out, err = run(capsys, "compare", bad, sim, "--strict")
    assert code == 3


def test_item01_one_seed_simulation_explains_nan_se(pair, tmp_path, capsys):
    th, _ = pair
    sim1 = tmp_path / "sim1.h5"
    io.save(fake_trajectory("simulation", steps=3, seeds=1), sim1)

    def one_seed(f):
        for name in ("m", "Q", "test_error", "train_loss"):
            f[f"{name}/error"][...] = np.nan

    copy_with(sim1, sim1.with_name("s.h5"), one_seed)
    code, out, err = run(capsys, "compare", th, sim1.with_name("s.h5"), "--strict")
    assert code == 3
    assert "simulation SE is NaN/inf" in out and "single seed" in out and "--seeds 2" in out


# 2. compare checks the kinds ------------------------------------------------------------------


@pytest.mark.parametrize("which, words", [
    ("TT", ["theory (kind dmft/flow/online) first", "'dmft' and 'dmft'"]),
    ("SS", ["'simulation' and 'simulation'"]),
    ("ST", ["swapped"]),
    ("bogus", ["kind='bogus'"]),
])
def test_item02_compare_checks_kinds(pair, tmp_path, capsys, which, words):
    th, sim = pair
    if which == "bogus":
        def bogus(f):
            f.attrs["kind"] = "bogus"
        args = (copy_with(th, tmp_path / "b.h5", bogus), sim)
    else:
        args = {"TT": (th, th), "SS": (sim, sim), "ST": (sim, th)}[which]
    code, out, err = run(capsys, "compare", *args)
    assert code == 1 and "PASS" not in out
    one_line(err, *words)


# 3. a run that is non-finite at step 0 -------------------------------------------------------


def test_item03_custom_target_nan_somewhere_refused():
    with pytest.raises(DMFTInputError, match=r"returns NaN or inf on \d+ of 512 standard-normal"):
        custom_target(lambda z: jnp.sqrt(z[..., 0]), k=1)


def test_item03_solve_nonfinite_at_step0_saves_partial(tmp_path, capsys):
    out = tmp_path / "x.h5"
    code, _, err = run(capsys, "solve", "--target", "he3", "--samples", "2000", "--replicas",
                       "4", "--steps", "2", "--label-noise", "1e200", "--no-progress",
                       "--out", out)
    assert code == 1
    one_line(err, "diverged at step 0", "label noise", str(tmp_path / "x.partial.h5"))
    back = io.load(tmp_path / "x.partial.h5")
    assert back.status == "diverged" and back.first_bad_step == 0 and len(back.step) == 0


def test_item03_kernel_diagonal_handles_zero_steps():
    K = np.arange(2 * 3 * 3 * 2 * 2, dtype=float).reshape(2, 3, 3, 2, 2)
    np.testing.assert_array_equal(kernel_diagonal(K), np.einsum("rttqv->rtqv", K))
    assert kernel_diagonal(K[:, :0, :0]).shape == (2, 0, 2, 2)


# 4. --out is checked before any compute -------------------------------------------------------

SOLVE = ("solve", "--target", "he3", "--samples", "640", "--replicas", "4", "--steps", "2",
         "--no-progress")


def test_item04_out_checked_before_compute(tmp_path, capsys):
    (tmp_path / "adir.h5").mkdir()
    (tmp_path / "afile").write_text("x")
    cases = [
        ("/proc/x.h5", ["--out", "/proc"]),
        (tmp_path / "adir.h5", ["--out", "existing directory"]),
        (tmp_path / "afile" / "x.h5", ["--out", "is a file, not a directory"]),
        (tmp_path / ("n" * 300 + ".h5"), ["--out", "file name is 303 bytes long"]),
    ]
    for out, words in cases:
        t0 = time.perf_counter()
        code, stdout, err = run(capsys, *SOLVE, "--out", out)
        assert code == 1 and stdout == "", (out, stdout)  # refused before the config print
        one_line(err, *words)
        assert time.perf_counter() - t0 < 2.0
    for cmd in (("simulate", "--target", "he3", "--d", "50", "--seeds", "2"),):
        code, stdout, err = run(capsys, *cmd, "--out", tmp_path / "adir.h5")
        assert code == 1 and stdout == ""
        one_line(err, "existing directory")


# 5. compare / inspect: figure arguments and damaged files ------------------------------------


@pytest.mark.parametrize("extra, words", [
    (("--dpi", "0"), ["--dpi", "[10, 1200]", "--dpi=0"]),
    (("--dpi", "-5"), ["--dpi", "--dpi=-5"]),
    (("--dpi", "100000"), ["--dpi", "--dpi=100000"]),
    (("--out", "c.xyz"), ["--out", ".png"]),
    (("--out", "c_noext"), ["--out", "c_noext"]),
    (("--out", "DIR.png"), ["--out", "existing directory"]),
])
def test_item05_compare_figure_args(pair, tmp_path, capsys, monkeypatch, extra, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR.png").mkdir()
    code, out, err = run(capsys, "compare", *pair, *extra)
    assert code == 1 and out == ""  # refused before the table
    one_line(err, *words)


def test_item05_save_figure_api_checks(tmp_path):
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


def _no_config(f):
    del f.attrs["config_json"]


def _bad_json(f):
    f.attrs["config_json"] = "{not json"


def _bad_problem(f):
    f.attrs["config_json"] = json.dumps({"problem": {"p": 2}})


def _bad_shape(f):
    del f["m/value"]
    f["m"].create_dataset("value", data=np.zeros((4, 3)))


@pytest.mark.parametrize("edit, words", [
    (_no_config, ["no attribute config_json"]),
    (_bad_json, ["config_json is not valid JSON"]),
    (_bad_problem, ["config_json does not describe a problem"]),
    (_bad_shape, ["/m/value has shape (4, 3)", "need (4, 2, 2)"]),
])
def test_item05_damaged_files_one_line(pair, tmp_path, capsys, edit, words):
    bad = copy_with(pair[0], tmp_path / "bad.h5", edit)
    code, out, err = run(capsys, "compare", bad, pair[1])
    assert code == 1
    one_line(err, *words)
    if edit in (_no_config, _bad_json):  # inspect reads the attributes and the layout only
        code, out, err = run(capsys, "inspect", bad)
        assert code == 1
        one_line(err, *words)


# 6. Ctrl-C ------------------------------------------------------------------------------------


def test_item06_ctrl_c_one_line(tmp_path):
    out = tmp_path / "int.h5"
    p = subprocess.Popen(
        [sys.executable, "-m", "dmft.cli", "solve", "--target", "he3", "--samples", "200000",
         "--steps", "30", "--no-progress", "--out", str(out)],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        p.stdout.readline()  # "dmft solve:" : imports are done, the compute is starting
        time.sleep(0.5)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    assert err.strip() == f"error: interrupted (Ctrl-C); nothing written to {out}", err
    assert not out.exists()


# 7. simulate --alpha 1e308 -------------------------------------------------------------------


def test_item07_simulate_huge_alpha(tmp_path, capsys):
    code, out, err = run(capsys, "simulate", "--target", "he3", "--alpha", "1e308", "--d", "50",
                         "--out", tmp_path / "s.h5")
    assert code == 1
    one_line(err, "`--alpha`·`--d` must give at most 1e+10 samples", "--alpha=1e+308")
    with pytest.raises(DMFTInputError, match="alpha"):
        dmft.simulate(make_problem("he3", alpha=1e308), d=50, seeds=2)


# 8. a NaN-producing target in simulate names the target ----------------------------------------


def test_item08_simulate_nan_target_names_target(tmp_path):
    # NaN on every batch the probe (512 rows) does not see: passes construction, fails the run
    tgt = Target("rare_nan", 1, lambda z: jnp.where(z.shape[0] == 512, z[..., 0], jnp.nan),
                 "test")
    problem = make_problem(tgt, steps=2)
    with pytest.raises(DivergenceError) as info:
        dmft.simulate(problem, d=40, seeds=2, progress=False)
    msg = str(info.value)
    assert "at step 0" in msg and "the target 'rare_nan' returns NaN or inf" in msg
    assert "learning rate" not in msg


# 9. raw exceptions that did not name the argument --------------------------------------------


def test_item09_arguments_named():
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


# 11. --allow-different is named -------------------------------------------------------------


def test_item11_allow_different_named(pair, tmp_path, capsys):
    other = tmp_path / "other.h5"
    traj = fake_trajectory("simulation", steps=3)
    traj.problem = make_problem("tanh_he3", p=2, steps=3, alpha=2.0, lr=0.2)
    io.save(traj, other)
    code, out, err = run(capsys, "compare", pair[0], other)
    assert code == 1
    line = one_line(err, "differ in alpha", "pass --allow-different to compare anyway")
    assert "check_problem" not in line
    assert run(capsys, "compare", pair[0], other, "--allow-different")[0] == 0


# 12. --schedule list:... ----------------------------------------------------------------------


def test_item12_schedule_list_accepted():
    args = build_parser().parse_args(["solve", "--target", "he3", "--steps", "4", "--schedule",
                                      "list:0,1,0,1", "--out", "x.h5"])
    assert problem_from_args(args).schedule == "list:0,1,0,1"
    args.schedule = "0,1,0,1"
    assert problem_from_args(args).schedule == "list:0,1,0,1"


# 13. the divergence message survives a partial file that cannot be written ---------------------


def test_item13_partial_unwritable_keeps_divergence_message(tmp_path, capsys):
    (tmp_path / "x.partial.h5").mkdir()
    code, out, err = run(capsys, *SOLVE, "--out", tmp_path / "x.h5")
    assert code == 1 and out == ""  # refused before the compute
    one_line(err, "partial-results name", "existing directory")

    def diverge():
        raise DivergenceError(2, "m", partial=fake_trajectory("dmft"))

    with pytest.raises(DivergenceError) as info:
        save_or_partial(diverge, str(tmp_path / "x.h5"), None)
    msg = str(info.value)
    assert "run diverged at step 2" in msg and "could NOT be saved" in msg
    assert "existing directory" in msg and "Likely causes" in msg


# 14. solve_online refuses float64 when x64 is off ---------------------------------------------


def test_item14_online_refuses_without_x64():
    problem = make_problem("he3", steps=2)
    jax.config.update("jax_enable_x64", False)
    try:
        with pytest.raises(DMFTInputError, match="x64 mode is off"):
            dmft.solve_online(problem, 1.0)
    finally:
        jax.config.update("jax_enable_x64", True)


# 15. --version ------------------------------------------------------------------------------


def test_item15_version(capsys):
    code, out, err = run(capsys, "--version")
    assert code == 0 and out.strip() == f"dmft {dmft.__version__}"


# 16. blow-up criterion ------------------------------------------------------------------------


def test_item16_blowup_criterion_unit():
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


BLOWUP = ("--target", "he3", "--alpha", "2", "--lr", "4", "--steps", "10", "--no-progress")


def test_item16_blowup_marked_and_compare_fails(tmp_path, capsys):
    th, sim = tmp_path / "b.h5", tmp_path / "s.h5"
    code, out, err = run(capsys, "solve", *BLOWUP, "--samples", "2000", "--replicas", "4",
                         "--out", th)
    assert code == 0 and "warning: the dmft run blew up at step" in err
    assert "status 'blew_up'" in out
    code, out, err = run(capsys, "simulate", *BLOWUP, "--d", "60", "--seeds", "2", "--out", sim)
    assert code == 0 and "warning: the simulation run blew up at step" in err
    assert io.load(th).status == "blew_up" and io.load(sim).status == "blew_up"
    with h5py.File(th, "r") as f:
        assert f.attrs["status"] == "blew_up" and f.attrs["first_bad_step"] > 0
    code, out, err = run(capsys, "compare", th, sim, "--strict", "--allow-different")
    assert code == 3 and "FAIL: the theory run has status 'blew_up'" in out


def test_item16_solve_api_marks_blowup():
    problem = make_problem("he3", alpha=2.0, lr=4.0, steps=10)
    with pytest.warns(RuntimeWarning, match="blew up"):
        traj = dmft.solve(problem, 2000, replicas=4, progress=False)
    assert traj.status == "blew_up"


# 17. the CLI names its flags and prints plain numbers -----------------------------------------


@pytest.mark.parametrize("flag, value, words", [
    ("--label-noise", "-0.1", ["`--label-noise` must be in [0, inf); got --label-noise=-0.1"]),
    ("--lr-a", "-1", ["`--lr-a` must be in [0, inf); got --lr-a=-1"]),
    ("--ridge", "-2", ["`--ridge`", "--ridge=-2"]),
])
def test_item17_flag_names(tmp_path, capsys, flag, value, words):
    code, out, err = run(capsys, *SOLVE, flag, value, "--out", tmp_path / "x.h5")
    assert code == 1
    line = one_line(err, *words)
    assert "np." not in line and "`noise`" not in line and "`lr_a`" not in line


# any other exception (a bug, out of memory) is still one line, exit 1 -------------------------


def test_unexpected_exception_one_line(capsys, monkeypatch):
    import dmft.cli as cli

    def broken(args):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nmore lines")

    monkeypatch.setattr(cli, "_cmd_targets", broken)
    monkeypatch.delenv("DMFT_TRACEBACK", raising=False)
    code, out, err = run(capsys, "targets")
    assert code == 1
    one_line(err, "unexpected RuntimeError: RESOURCE_EXHAUSTED: out of memory", "DMFT_TRACEBACK=1")
    monkeypatch.setenv("DMFT_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        main(["targets"])
