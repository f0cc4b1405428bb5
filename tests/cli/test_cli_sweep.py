"""`dmft sweep` and `dmft plot-sweep` from the command line."""

import numpy as np
import pytest

from dmft.cli import main
from dmft.cli._sweep import parse_values
from dmft.io import load_sweep

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
