"""`dmft sweep` and `dmft plot-sweep` from the command line."""

import time

import numpy as np
import pytest
from _fakes import one_line_error, run_cli

from dmft import DMFTInputError
from dmft.cli import main
from dmft.cli._common import join_negative_values
from dmft.cli._main import build_parser
from dmft.cli._sweep import parse_values
from dmft.io import load_sweep

BASE = ("sweep", "--target", "he3", "--steps", "2", "--samples", "640", "--replicas", "4",
        "--no-progress")

pytestmark = pytest.mark.filterwarnings("ignore:the response:RuntimeWarning")


def test_value_syntax():
    assert parse_values("--lr", "0.5") == [0.5]
    assert parse_values("--lr", "1,2,3") == [1.0, 2.0, 3.0]
    np.testing.assert_allclose(parse_values("--lr", "0.1:10:3:log"), [0.1, 1.0, 10.0])
    np.testing.assert_allclose(parse_values("--alpha", "1:2:3"), [1.0, 1.5, 2.0])


@pytest.mark.parametrize("flag, text", [("--lr", "0:1:4:log"), ("--lr", "1:2:1"),
                                        ("--alpha", "1:2"), ("--alpha", "a,b"),
                                        ("--lr", "1:2:3:lin"), ("--ridge", "1:nan:3")])
def test_bad_ranges_exit_1_naming_the_flag(flag, text, tmp_path, capsys):
    code = main(["sweep", "--target", "he3", "--steps", "2", flag, text, "--samples", "2000",
                 "--replicas", "2", "--out", str(tmp_path / "s.h5")])
    err = capsys.readouterr().err.strip().splitlines()
    assert code == 1
    assert len(err) == 1 and flag in err[0]
    assert not (tmp_path / "s.h5").exists()


def test_sweep_and_plot_from_the_cli(tmp_path, capsys):
    out = tmp_path / "sweep.h5"
    code = main(["sweep", "--target", "he3", "--steps", "2", "--lr", "0.2:0.8:3:log",
                 "--alpha", "1,2", "--samples", "2400", "--replicas", "4", "--no-progress",
                 "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = load_sweep(out)
    assert res.axes == ["lr", "alpha"] and res.shape == (3, 2)
    np.testing.assert_allclose(res.coords[0], [0.2, 0.4, 0.8])
    png = tmp_path / "phase.png"
    assert main(["plot-sweep", str(out), "--observable", "test_error", "--step", "2",
                 "--out", str(png)]) == 0
    assert png.stat().st_size > 1000
    assert main(["plot-sweep", str(out), "--step", "9", "--out", str(png)]) == 1
    assert "--step" in capsys.readouterr().err
    for step in ("1.5", "-1", "x"):  # argparse would print its usage: one line instead
        code, _, err = run_cli(capsys, "plot-sweep", out, "--step", step, "--out", png)
        assert code == 1
        one_line_error(err, "`--step` must be an integer in [0, 2]", f"--step {step}")
    assert main(["sweep", "--target", "he3", "--steps", "2", "--lr", "0.3", "--samples",
                 "2400", "--replicas", "4", "--out", str(out)]) == 1
    assert "at least one axis" in capsys.readouterr().err


def test_sweep_over_the_minibatch_fraction_from_the_cli(tmp_path, capsys):
    out = tmp_path / "b.h5"
    code = main(["sweep", "--target", "he3", "--steps", "2", "--batch-fraction", "0.25,1",
                 "--samples", "2400", "--replicas", "4", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    res = load_sweep(out)
    assert res.axes == ["batch_fraction"] and res.problem.schedule == "sgd:0.25"
    np.testing.assert_allclose(res.coords[0], [0.25, 1.0])
    assert main(["sweep", "--target", "he3", "--steps", "2", "--batch-fraction", "0.5,1.5",
                 "--samples", "2400", "--replicas", "4", "--out", str(out)]) == 1
    assert "schedule" in capsys.readouterr().err


def test_sweep_devices_flag(tmp_path, capsys):
    """--devices 1 reaches dmft.sweep: the sweep file's settings say devices=1."""
    out = tmp_path / "d1.h5"
    code = main(["sweep", "--target", "he3", "--steps", "2", "--lr", "0.2,0.4", "--samples",
                 "640", "--replicas", "4", "--devices", "1", "--no-progress", "--out", str(out)])
    assert code == 0, capsys.readouterr().err
    assert load_sweep(out).settings["devices"] == 1


# the grid is bounded before anything is computed -----------------------------------------


@pytest.mark.parametrize("axes, words", [
    (("--lr", "0.1:1:1000000"), ["`--lr` range 0.1:1:1000000 asks for num = 1000000 points",
                                 "--max-points=10000", "pass --max-points 1000000"]),
    (("--lr", "0.1:1:1000", "--alpha", "1:2:100"),
     ["the grid lr[1000] x alpha[100] = 100000 points", "--max-points=10000",
      "use fewer values", "pass --max-points 100000"]),
    (("--lr", "0.1,0.2", "--alpha", "1,2", "--max-points", "3"),
     ["lr[2] x alpha[2] = 4 points", "--max-points=3"]),
    (("--lr", "0.1,0.2", "--max-points", "0"), ["`--max-points` must be an integer in [1,",
                                                "--max-points=0"]),
])
def test_grid_limit(axes, words, tmp_path, capsys):
    out = tmp_path / "s.h5"
    t0 = time.perf_counter()
    code, stdout, err = run_cli(capsys, *BASE, *axes, "--out", out)
    assert code == 1 and stdout == ""  # refused before the grid line and the compute
    one_line_error(err, *words)
    assert time.perf_counter() - t0 < 5.0 and not out.exists()
    with pytest.raises(DMFTInputError, match="--max-points=10"):
        parse_values("--lr", "0:1:11", max_points=10)
    assert len(parse_values("--lr", "0:1:10", max_points=10)) == 10


# a value starting with '-' reaches the flag's own check ------------------------------------


def test_negative_values_are_values():
    parser = build_parser()
    argv = ["sweep", "--lr", "-1:1:3:log", "--ridge", "-1,0", "--alpha", "-.5", "--m0",
            "-inf", "--no-progress", "--out", "x.h5"]
    joined = join_negative_values(parser, argv)
    assert joined == ["sweep", "--lr=-1:1:3:log", "--ridge=-1,0", "--alpha=-.5", "--m0=-inf",
                      "--no-progress", "--out", "x.h5"]
    # a flag's name after a value-taking flag, and anything after `--`, stay as they are
    assert join_negative_values(parser, ["solve", "--out", "--help"]) == [
        "solve", "--out", "--help"]
    assert join_negative_values(parser, ["--", "--lr", "-1"]) == ["--", "--lr", "-1"]


@pytest.mark.parametrize("axes, words", [
    (("--lr", "-1:1:3:log"), ["`--lr` log range", "start > 0 and stop > 0",
                              "got --lr -1:1:3:log"]),
    (("--lr", "-1:1:3"), ["`--lr` must be in (0, inf); got --lr=-1.0"]),
    (("--ridge", "-1,0", "--lr", "0.2,0.4"), ["`--ridge` must be in [0, inf); got --ridge=-1.0"]),
    (("--ridge", "0,-1"), ["`--ridge` axis value -1 is not allowed",
                           "`--ridge` must be in [0, inf); got --ridge=-1.0"]),
    (("--lr", "0.2,-0.4"), ["`--lr` axis value -0.4 is not allowed",
                            "`--lr` must be in (0, inf); got --lr=-0.4"]),
    (("--alpha", "-2,1"), ["`--alpha` must be in (0, inf); got --alpha=-2.0"]),
    (("--label-noise", "1,-1"), ["`--label-noise` axis value -1", "[0, inf)"]),
])
def test_negative_axis_values_one_line(axes, words, tmp_path, capsys):
    out = tmp_path / "s.h5"
    code, stdout, err = run_cli(capsys, *BASE, *axes, "--out", out)
    assert code == 1 and stdout == "" and "usage:" not in err
    one_line_error(err, *words)
    assert not out.exists()


def test_negative_value_in_solve_still_one_line(tmp_path, capsys):
    code, _, err = run_cli(capsys, "solve", "--target", "he3", "--ridge", "-1", "--out",
                           tmp_path / "x.h5")
    assert code == 1
    one_line_error(err, "`--ridge` must be in [0, inf); got --ridge=-1.0")


@pytest.mark.parametrize("flag, value, loop", [
    ("--steps", "3,4", "for v in 3 4;"),
    ("--p", "1,2", "for v in 1 2;"),
    ("--steps", "2:6:3", "for v in V1 V2;"),
    ("--activation", "relu,tanh", "for v in relu tanh;"),
])
def test_structural_field_is_not_an_axis(flag, value, loop, tmp_path, capsys):
    argv = [a for a in BASE if a not in ("--steps", "2")]
    code, stdout, err = run_cli(capsys, *argv, flag, value, "--lr", "0.2,0.4", "--out",
                                tmp_path / "s.h5")
    assert code == 1 and stdout == "" and "usage:" not in err
    one_line_error(err, f"`{flag}` is structural (it changes the compiled program)",
                   "cannot be a sweep axis", f"got {flag} {value}", "one sweep per value",
                   loop, f"{flag} $v")


def test_structural_field_must_be_an_integer(tmp_path, capsys):
    code, _, err = run_cli(capsys, *BASE, "--p", "1.5", "--lr", "0.2,0.4", "--out",
                           tmp_path / "s.h5")
    assert code == 1
    one_line_error(err, "`--p` must be an integer; got --p='1.5'")
