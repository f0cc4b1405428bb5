"""Every CLI failure is one clear line, found before the compute, with the right exit code;
and ``dmft compare`` cannot pass garbage (NaN values, wrong kinds, damaged files, blown-up
runs)."""

from __future__ import annotations

import contextlib
import json
import signal
import subprocess
import sys
import time

import h5py
import numpy as np
import pytest
from _fakes import fake_trajectory, one_line_error, run_cli, subprocess_env

import dmft
from dmft import DivergenceError, DMFTInputError, io
from dmft.cli import main
from dmft.cli._common import problem_from_args, save_or_partial
from dmft.cli._main import build_parser
from dmft.model import make_problem

SOLVE = ("solve", "--target", "he3", "--samples", "640", "--replicas", "4", "--steps", "2",
         "--no-progress")


def copy_with(src, dst, edit):
    """Copy a saved file, then let ``edit(h5py.File)`` damage it."""
    with open(src, "rb") as a, open(dst, "wb") as b:
        b.write(a.read())
    with h5py.File(dst, "r+") as f:
        edit(f)
    return dst


def test_compare_fails_on_nan_theory_value(pair, tmp_path, capsys):
    th, sim = pair

    def nan_m(f):
        f["m/value"][...] = np.nan

    bad = copy_with(th, tmp_path / "nan.h5", nan_m)
    code, out, err = run_cli(capsys, "compare", bad, sim)
    assert code == 1 and "PASS" not in out
    assert "FAIL: 4 compared entries have NaN/inf: m[0,0]: theory value is NaN/inf at t=0,1,2,3" \
        in out
    one_line_error(err, "the verdict is FAIL", "NaN/inf", "pass --report-only to exit 0")
    code, out, err = run_cli(capsys, "compare", bad, sim, "--strict")
    assert code == 1
    code, out, err = run_cli(capsys, "compare", bad, sim, "--report-only")
    assert code == 0 and "FAIL" in out and err == ""


def test_compare_explains_nan_se_of_one_seed(pair, tmp_path, capsys):
    th, _ = pair
    sim1 = tmp_path / "sim1.h5"
    io.save(fake_trajectory("simulation", steps=3, seeds=1), sim1)

    def one_seed(f):
        for name in ("m", "Q", "test_error", "train_loss"):
            f[f"{name}/error"][...] = np.nan

    copy_with(sim1, sim1.with_name("s.h5"), one_seed)
    code, out, err = run_cli(capsys, "compare", th, sim1.with_name("s.h5"))
    assert code == 1
    assert "simulation SE is NaN/inf" in out and "single seed" in out and "--seeds 2" in out


@pytest.mark.parametrize("which, words", [
    ("TT", ["theory (kind dmft/flow/online) first", "'dmft' and 'dmft'"]),
    ("SS", ["'simulation' and 'simulation'"]),
    ("ST", ["swapped"]),
    ("bogus", ["kind='bogus'"]),
])
def test_compare_checks_kinds(pair, tmp_path, capsys, which, words):
    th, sim = pair
    if which == "bogus":
        def bogus(f):
            f.attrs["kind"] = "bogus"
        args = (copy_with(th, tmp_path / "b.h5", bogus), sim)
    else:
        args = {"TT": (th, th), "SS": (sim, sim), "ST": (sim, th)}[which]
    code, out, err = run_cli(capsys, "compare", *args)
    assert code == 1 and "PASS" not in out
    one_line_error(err, *words)


def test_compare_names_allow_different(pair, tmp_path, capsys):
    other = tmp_path / "other.h5"
    traj = fake_trajectory("simulation", steps=3)
    traj.problem = make_problem("tanh_he3", p=2, steps=3, alpha=2.0, lr=0.2)
    io.save(traj, other)
    code, out, err = run_cli(capsys, "compare", pair[0], other)
    assert code == 1
    line = one_line_error(err, "differ in alpha", "pass --allow-different to compare anyway")
    assert "check_problem" not in line
    assert run_cli(capsys, "compare", pair[0], other, "--allow-different")[0] == 0


@pytest.mark.parametrize("extra, words", [
    (("--dpi", "0"), ["--dpi", "[10, 1200]", "--dpi=0"]),
    (("--dpi", "-5"), ["--dpi", "--dpi=-5"]),
    (("--dpi", "100000"), ["--dpi", "--dpi=100000"]),
    (("--out", "c.xyz"), ["--out", ".png"]),
    (("--out", "c_noext"), ["--out", "c_noext"]),
    (("--out", "DIR.png"), ["--out", "existing directory"]),
])
def test_compare_figure_args(pair, tmp_path, capsys, monkeypatch, extra, words):
    monkeypatch.chdir(tmp_path)
    (tmp_path / "DIR.png").mkdir()
    code, out, err = run_cli(capsys, "compare", *pair, *extra)
    assert code == 1 and out == ""  # refused before the table
    one_line_error(err, *words)


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
def test_damaged_files_one_line(pair, tmp_path, capsys, edit, words):
    bad = copy_with(pair[0], tmp_path / "bad.h5", edit)
    code, out, err = run_cli(capsys, "compare", bad, pair[1])
    assert code == 1
    one_line_error(err, *words)
    if edit in (_no_config, _bad_json):  # inspect reads the attributes and the layout only
        code, out, err = run_cli(capsys, "inspect", bad)
        assert code == 1
        one_line_error(err, *words)


def test_out_checked_before_compute(tmp_path, capsys):
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
        code, stdout, err = run_cli(capsys, *SOLVE, "--out", out)
        assert code == 1 and stdout == "", (out, stdout)  # refused before the config print
        one_line_error(err, *words)
        assert time.perf_counter() - t0 < 2.0
    for cmd in (("simulate", "--target", "he3", "--d", "50", "--seeds", "2"),):
        code, stdout, err = run_cli(capsys, *cmd, "--out", tmp_path / "adir.h5")
        assert code == 1 and stdout == ""
        one_line_error(err, "existing directory")


def test_unwritable_partial_keeps_divergence_message(tmp_path, capsys):
    (tmp_path / "x.partial.h5").mkdir()
    code, out, err = run_cli(capsys, *SOLVE, "--out", tmp_path / "x.h5")
    assert code == 1 and out == ""  # refused before the compute
    one_line_error(err, "partial-results name", "existing directory")

    def diverge():
        raise DivergenceError(2, "m", partial=fake_trajectory("dmft"))

    with pytest.raises(DivergenceError) as info:
        save_or_partial(diverge, str(tmp_path / "x.h5"), None)
    msg = str(info.value)
    assert "run diverged at step 2" in msg and "could NOT be saved" in msg
    assert "existing directory" in msg and "Likely causes" in msg


def test_solve_nonfinite_at_step0_saves_partial(tmp_path, capsys):
    out = tmp_path / "x.h5"
    code, _, err = run_cli(capsys, "solve", "--target", "he3", "--samples", "2000",
                           "--replicas", "4", "--steps", "2", "--label-noise", "1e200",
                           "--no-progress", "--out", out)
    assert code == 1
    one_line_error(err, "diverged at step 0", "label noise", str(tmp_path / "x.partial.h5"))
    back = io.load(tmp_path / "x.partial.h5")
    assert back.status == "diverged" and back.first_bad_step == 0 and len(back.step) == 0


BLOWUP = ("--target", "he3", "--alpha", "2", "--lr", "4", "--steps", "10", "--no-progress")


def test_blowup_marked_and_compare_fails(tmp_path, capsys):
    th, sim = tmp_path / "b.h5", tmp_path / "s.h5"
    code, out, err = run_cli(capsys, "solve", *BLOWUP, "--samples", "2000", "--replicas", "4",
                             "--out", th)
    assert code == 0 and "warning: the dmft run blew up at step" in err
    assert "status 'blew_up'" in out
    code, out, err = run_cli(capsys, "simulate", *BLOWUP, "--d", "60", "--seeds", "2", "--out",
                             sim)
    assert code == 0 and "warning: the simulation run blew up at step" in err
    assert io.load(th).status == "blew_up" and io.load(sim).status == "blew_up"
    with h5py.File(th, "r") as f:
        assert f.attrs["status"] == "blew_up" and f.attrs["first_bad_step"] > 0
    code, out, err = run_cli(capsys, "compare", th, sim, "--allow-different")
    assert code == 1 and "FAIL: the theory run has status 'blew_up'" in out
    one_line_error(err, "the verdict is FAIL", "status 'blew_up'")


def test_simulate_huge_alpha(tmp_path, capsys):
    code, out, err = run_cli(capsys, "simulate", "--target", "he3", "--alpha", "1e308", "--d",
                             "50", "--out", tmp_path / "s.h5")
    assert code == 1
    one_line_error(err, "`--alpha`·`--d` must give at most 1e+10 samples", "--alpha=1e+308")
    with pytest.raises(DMFTInputError, match="alpha"):
        dmft.simulate(make_problem("he3", alpha=1e308), d=50, seeds=2)


def test_schedule_list_accepted():
    args = build_parser().parse_args(["solve", "--target", "he3", "--steps", "4", "--schedule",
                                      "list:0,1,0,1", "--out", "x.h5"])
    assert problem_from_args(args).schedule == "list:0,1,0,1"
    args.schedule = "0,1,0,1"
    assert problem_from_args(args).schedule == "list:0,1,0,1"


@pytest.mark.parametrize("flag, value, words", [
    ("--label-noise", "-0.1", ["`--label-noise` must be in [0, inf); got --label-noise=-0.1"]),
    ("--lr-a", "-1", ["`--lr-a` must be in [0, inf); got --lr-a=-1"]),
    ("--ridge", "-2", ["`--ridge`", "--ridge=-2"]),
    ("--momentum", "1", ["`--momentum` must be in [0, 1); got --momentum=1"]),
    ("--momentum-a", "0.1,0.2,0.3", ["`--momentum-a` must have one value or steps=2 values"]),
])
def test_messages_name_flags(tmp_path, capsys, flag, value, words):
    code, out, err = run_cli(capsys, *SOLVE, flag, value, "--out", tmp_path / "x.h5")
    assert code == 1
    line = one_line_error(err, *words)
    assert "np." not in line and "`noise`" not in line and "`lr_a`" not in line


def test_version(capsys):
    code, out, err = run_cli(capsys, "--version")
    assert code == 0 and out.strip() == f"dmft {dmft.__version__}"


def test_ctrl_c_one_line(tmp_path):
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


@pytest.mark.parametrize("delay", [0.3, 1.0])
def test_ctrl_c_during_start_up(tmp_path, delay):
    """SIGINT while numpy/JAX import or the program compiles (a KeyboardInterrupt there can
    land in JAX's gc callback, where Python ignores it): still exit 130, nothing written."""
    out = tmp_path / "int.h5"
    p = subprocess.Popen(
        [sys.executable, "-m", "dmft.cli", "solve", "--target", "he3", "--samples", "4000",
         "--replicas", "4", "--steps", "3", "--no-progress", "--out", str(out)],
        env=subprocess_env(), stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        time.sleep(delay)
        p.send_signal(signal.SIGINT)
        _, err = p.communicate(timeout=120)
    finally:
        if p.poll() is None:
            p.kill()
    assert p.returncode == 130, err
    line = one_line_error(err, "error: interrupted (Ctrl-C); nothing written")
    assert "Exception ignored" not in err and line == err.strip()
    assert not out.exists()


def test_swallowed_ctrl_c_still_stops_before_writing(tmp_path, capsys, monkeypatch):
    """A Ctrl-C whose KeyboardInterrupt was lost (recorded by the handler, raised nowhere)
    stops the command at its next file write: exit 130 and no file."""
    from dmft.cli import _interrupt

    real = _interrupt.sigint_guard

    @contextlib.contextmanager
    def guard_with_lost_interrupt():
        with real():
            _interrupt._STATE["hit"] = True  # as the handler records it
            yield

    monkeypatch.setattr(_interrupt, "sigint_guard", guard_with_lost_interrupt)
    out = tmp_path / "x.h5"
    code, _, err = run_cli(capsys, *SOLVE, "--out", out)
    _interrupt._STATE["hit"] = False
    assert code == 130
    one_line_error(err, "interrupted (Ctrl-C)", f"nothing written to {out}")
    assert not out.exists()


def test_unexpected_exception_one_line(capsys, monkeypatch):
    from dmft.cli import _info

    def broken(args):
        raise RuntimeError("RESOURCE_EXHAUSTED: out of memory\nmore lines")

    monkeypatch.setattr(_info, "cmd_targets", broken)
    monkeypatch.delenv("DMFT_TRACEBACK", raising=False)
    code, out, err = run_cli(capsys, "targets")
    assert code == 1
    one_line_error(err, "unexpected RuntimeError: RESOURCE_EXHAUSTED: out of memory",
                   "DMFT_TRACEBACK=1")
    monkeypatch.setenv("DMFT_TRACEBACK", "1")
    with pytest.raises(RuntimeError, match="RESOURCE_EXHAUSTED"):
        main(["targets"])
