"""The ``dmft`` command line: subcommands, exit codes, one-line errors, partial files."""

from __future__ import annotations

import os

import h5py
import numpy as np
import pytest
from _fakes import ROOT, one_line_error, run_cli, subprocess_env

from dmft import io
from dmft.cli import main
from dmft.model import ACTIVATIONS, TARGETS

SOLVE = ("solve", "--target", "tanh_he3", "--samples", "640", "--replicas", "4", "--steps", "2",
         "--no-progress")


def test_solve_simulate_compare_inspect(tmp_path, capsys):
    th, sim, fig = tmp_path / "th.h5", tmp_path / "sim.h5", tmp_path / "fig.png"
    code, out, err = run_cli(capsys, *SOLVE, "--out", str(th))
    assert code == 0, err
    assert "tanh_he3" in out and f"wrote {th}" in out  # resolved config and output path
    code, out, err = run_cli(capsys, "simulate", "--target", "tanh_he3", "--steps", "2", "--d",
                             "60", "--seeds", "2", "--no-progress", "--out", str(sim))
    assert code == 0, err
    assert f"wrote {sim}" in out
    with h5py.File(sim, "r") as f:
        assert f.attrs["kind"] == "simulation" and f["m/per_seed"].shape == (2, 3, 2, 2)
        assert f.attrs["command_line"].startswith("dmft simulate")
    # tiny runs: the verdict may go either way, so only the report is tested here
    code, out, err = run_cli(capsys, "compare", str(th), str(sim), "--out", str(fig),
                             "--report-only")
    assert code == 0, err
    assert "m[0,0]" in out and "test_error" in out and "max |z|" in out
    assert ("PASS" in out) or ("FAIL" in out)
    assert fig.stat().st_size > 10_000
    code, out, err = run_cli(capsys, "inspect", str(th))
    assert code == 0 and "dmft-trajectories 1.2" in out and "kind:            dmft" in out
    assert "status:          ok" in out and "/kernels/C/value" in out


def test_float32_solve_close_to_float64(tmp_path, capsys):
    """--dtype float32 runs, records its dtype, and stays within 1e-4 of the float64 file
    (same seed → same samples; the difference is arithmetic only)."""
    f64, f32 = tmp_path / "f64.h5", tmp_path / "f32.h5"
    assert run_cli(capsys, *SOLVE, "--out", str(f64))[0] == 0
    code, out, err = run_cli(capsys, *SOLVE, "--dtype", "float32", "--out", str(f32))
    assert code == 0, err
    a, b = io.load(f64), io.load(f32)
    assert a.settings["dtype"] == "float64" and b.settings["dtype"] == "float32"
    assert np.max(np.abs(np.asarray(a.m.value) - np.asarray(b.m.value))) < 1e-4
    assert np.max(np.abs(np.asarray(a.Q.value) - np.asarray(b.Q.value))) < 1e-4


def test_divergence_writes_partial_file(tmp_path, capsys):
    out_path = tmp_path / "run.h5"
    code, out, err = run_cli(capsys, "solve", "--target", "tanh_he3", "--samples", "640",
                             "--replicas", "4", "--steps", "3", "--lr", "1e30", "--no-progress",
                             "--out", str(out_path))
    assert code == 1
    partial = tmp_path / "run.partial.h5"
    one_line_error(err, "diverged", str(partial))
    assert not out_path.exists()  # a partial run never takes the good file's name
    back = io.load(partial)
    assert back.status == "diverged" and back.first_bad_step >= 0


def test_compare_prints_z_table_and_verdict(pair, capsys):
    th, sim = pair
    code, out, err = run_cli(capsys, "compare", str(th), str(sim))
    assert code == 0, err
    assert "z = (theory - simulation)" in out
    for entry in ("m[0,0]", "m[1,1]", "Q[0,1]", "test_error", "train_loss"):
        assert entry in out
    assert "PASS" in out
    # a failed verdict exits 1 with one line; --report-only (alias --no-fail) exits 0;
    # --strict, the old way to ask for a failing exit code, is still accepted
    tight = (str(th), str(sim), "--threshold", "1e-9")
    code, out, err = run_cli(capsys, "compare", *tight)
    assert code == 1 and "FAIL" in out
    one_line_error(err, "the verdict is FAIL", "(threshold 1e-09)", "--report-only")
    assert run_cli(capsys, "compare", *tight, "--strict")[0] == 1
    for flag in ("--report-only", "--no-fail"):
        code, out, err = run_cli(capsys, "compare", *tight, flag)
        assert code == 0 and "FAIL" in out and err == ""
    code, out, err = run_cli(capsys, "compare", str(th), str(sim), "--strict")
    assert code == 0 and "PASS" in out


def test_targets_lists_everything(capsys):
    code, out, err = run_cli(capsys, "targets")
    assert code == 0
    for name, t in TARGETS.items():
        assert name in out and t.formula in out
    for name in ACTIVATIONS:
        assert name in out


@pytest.mark.parametrize(
    "argv, words",
    [
        (SOLVE + ("--alpha", "-1", "--out", "x.h5"), ["alpha"]),
        (SOLVE + ("--lr", "nan", "--out", "x.h5"), ["lr"]),
        (SOLVE + ("--steps", "0", "--out", "x.h5"), ["steps"]),
        (SOLVE + ("--p", "0", "--out", "x.h5"), ["p"]),
        (SOLVE + ("--activation", "softplus", "--out", "x.h5"), ["activation", "softplus"]),
        (SOLVE + ("--m0", "0.1,0.2,0.3", "--out", "x.h5"), ["m0", "4"]),
        (SOLVE + ("--second-layer", "1,2,3", "--out", "x.h5"), ["--second-layer"]),
        (SOLVE + ("--schedule", "sometimes", "--out", "x.h5"), ["schedule"]),
        (SOLVE + ("--samples", "1001", "--out", "x.h5"), ["samples", "replicas"]),
        (SOLVE + ("--out", "x.txt"), ["out"]),
        (SOLVE + ("--dtype", "float16", "--out", "x.h5"), ["dtype", "float16"]),
        (("simulate", "--target", "he3", "--dtype", "half", "--out", "x.h5"), ["dtype", "half"]),
        (("solve", "--target", "nope", "--out", "x.h5"), ["target", "nope"]),
        (("simulate", "--target", "he3", "--d", "0", "--out", "x.h5"), ["d"]),
        (("simulate", "--target", "he3", "--seeds", "0", "--out", "x.h5"), ["seeds"]),
        (("simulate", "--target", "he3", "--alpha", "-2", "--out", "x.h5"), ["alpha"]),
        (("simulate", "--target", "he3", "--test-error", "guess", "--out", "x.h5"),
         ["--test-error"]),
        (("compare", "missing_a.h5", "missing_b.h5"), ["theory", "not found"]),
        (("inspect", "missing.h5"), ["not found"]),
    ],
)
def test_bad_input_exit_1_one_line(tmp_path, capsys, monkeypatch, argv, words):
    monkeypatch.chdir(tmp_path)
    code, out, err = run_cli(capsys, *argv)
    assert code == 1, (out, err)
    one_line_error(err, *words)
    assert not any(n.endswith(".h5") for n in os.listdir(tmp_path))


def test_non_hdf5_and_foreign_files(tmp_path, capsys, pair):
    bad = tmp_path / "bad.h5"
    bad.write_text("not hdf5")
    code, out, err = run_cli(capsys, "inspect", str(bad))
    assert code == 1
    one_line_error(err, "not an HDF5 file")
    code, out, err = run_cli(capsys, "compare", str(pair[0]), str(bad))
    assert code == 1
    one_line_error(err, "not an HDF5 file")
    foreign = tmp_path / "foreign.h5"
    with h5py.File(foreign, "w") as f:
        f.attrs["format"] = "something-else"
    code, out, err = run_cli(capsys, "inspect", str(foreign))
    assert code == 1
    one_line_error(err, "not a dmft file")


@pytest.mark.parametrize(
    "argv",
    [
        (),
        ("frobnicate",),
        ("solve", "--out", "x.h5"),  # --target missing
        ("solve", "--target", "he3", "--alpha", "abc", "--out", "x.h5"),
        ("solve", "--target", "he3", "--bogus", "--out", "x.h5"),
        ("compare", "only_one.h5"),
    ],
)
def test_usage_errors_exit_2(capsys, argv):
    code, out, err = run_cli(capsys, *argv)
    assert code == 2
    assert "usage:" in err


@pytest.mark.parametrize("cmd", ["solve", "simulate", "compare", "sweep", "plot-sweep",
                                 "features", "targets", "inspect"])
def test_help(capsys, cmd):
    code, out, err = run_cli(capsys, cmd, "--help")
    assert code == 0 and "usage: dmft" in out


@pytest.mark.slow
def test_minibatch_and_logistic_flags(tmp_path, capsys):
    """--schedule sgd:b / epochs:B and --loss logistic run; bad values exit 1 with one line
    naming the flag."""
    for extra in (("--schedule", "sgd:0.25"), ("--schedule", "epochs:4")):
        code, out, err = run_cli(capsys, *SOLVE, *extra, "--out", str(tmp_path / "a.h5"))
        assert code == 0, err
    code, out, err = run_cli(capsys, "solve", "--target", "sign_z1z2z3", "--p", "3", "--activation",
                             "erf", "--loss", "logistic", "--samples", "800", "--replicas", "4",
                             "--steps", "2", "--no-progress", "--out", str(tmp_path / "l.h5"))
    assert code == 0, err
    for bad in ("sgd:0", "sgd:1.5", "epochs:0", "epochs:2.5", "sgd:-1"):
        code, out, err = run_cli(capsys, *SOLVE, "--schedule", bad, "--out", str(tmp_path / "b.h5"))
        assert code == 1
        one_line_error(err, "schedule")
    code, out, err = run_cli(capsys, *SOLVE, "--loss", "logistic", "--out", str(tmp_path / "c.h5"))
    assert code == 1
    one_line_error(err, "loss", "±1")


def test_momentum_flags_reach_the_file(tmp_path, capsys):
    """--momentum (per step), --momentum-a and --nesterov build the problem the file records."""
    from dmft.io import load

    code, out, err = run_cli(capsys, *SOLVE, "--momentum", "0.1,0.3", "--momentum-a", "0.2",
                             "--nesterov", "--out", str(tmp_path / "m.h5"))
    assert code == 0, err
    pr = load(tmp_path / "m.h5").problem
    assert pr.nesterov is True
    assert pr.momentum_per_step.tolist() == [0.1, 0.3]
    assert pr.second_layer_momentum.tolist() == [0.2, 0.2]


SIMULATE = ("simulate", "--target", "tanh_he3", "--steps", "2", "--d", "60", "--seeds", "2",
            "--no-progress")
SWEEP = ("sweep", "--target", "he3", "--steps", "2", "--lr", "0.2,0.4", "--samples", "640",
         "--replicas", "4", "--no-progress")


@pytest.mark.parametrize("argv", [SOLVE, SIMULATE], ids=["solve", "simulate"])
def test_devices_flag_is_passed_on(tmp_path, capsys, argv):
    """--devices 1 reaches the library: the saved settings and the HDF5 /config say 1."""
    path = tmp_path / "d1.h5"
    code, out, err = run_cli(capsys, *argv, "--devices", "1", "--out", str(path))
    assert code == 0, err
    assert io.load(path).settings["devices"] == 1
    with h5py.File(path, "r") as f:
        assert int(f["config"].attrs["settings.devices"]) == 1


@pytest.mark.parametrize("command", ["solve", "simulate", "sweep"])
@pytest.mark.parametrize("value", ["0", "-1", "many", "1.5", "too_many"])
def test_bad_devices_exit_1_one_line(tmp_path, capsys, command, value):
    """A bad --devices is one line naming the flag, the value and [1, available]; nothing is
    computed or written."""
    import jax

    n = len(jax.devices())
    value = str(n + 1) if value == "too_many" else value
    argv = {"solve": SOLVE, "simulate": SIMULATE, "sweep": SWEEP}[command]
    code, out, err = run_cli(capsys, *argv, "--devices", value, "--out", str(tmp_path / "x.h5"))
    assert code == 1, (out, err)
    got = value if value.lstrip("-").isdigit() else repr(value)
    one_line_error(err, "`--devices`", f"[1, {n}]", f"got --devices={got}")
    assert not os.listdir(tmp_path)


@pytest.mark.slow  # a 4-device subprocess; the library paths are in test_devices.py
def test_devices_flag_on_forced_host_devices(tmp_path):
    """`dmft solve --devices 2` on 4 forced host devices (a subprocess: the flag must be set
    before JAX starts) records devices=2; --devices 5 names the range [1, 4]."""
    import subprocess
    import sys

    env = subprocess_env(XLA_FLAGS="--xla_force_host_platform_device_count=4",
                         JAX_PLATFORMS="cpu", DMFT_NO_COMPILE_CACHE="1")
    path = tmp_path / "d2.h5"
    code = ("import sys; from dmft.cli import main; "
            "sys.exit(main(sys.argv[1:]))")
    argv = [sys.executable, "-c", code, *SOLVE, "--out", str(path)]
    done = subprocess.run(argv + ["--devices", "2"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-4000:]
    with h5py.File(path, "r") as f:
        assert int(f["config"].attrs["settings.devices"]) == 2
        assert int(f["config"].attrs["settings.processes"]) == 1
    assert io.load(path).settings["devices"] == 2
    done = subprocess.run(argv + ["--devices", "5"], env=env, cwd=ROOT, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 1
    one_line_error(done.stderr, "`--devices`", "[1, 4]", "--devices=5")


# --dpi: one range for every command that draws a figure ------------------------------------

COMMANDS = ("solve", "simulate", "compare", "sweep", "plot-sweep", "features", "targets",
            "inspect")


@pytest.fixture(scope="module")
def sweep_file(tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "sweep.h5"
    code = main([*SWEEP, "--out", str(out)])
    assert code == 0
    return out


def test_every_dpi_flag_takes_the_same_range(pair, sweep_file, tmp_path, capsys):
    """Every subcommand with --dpi writes its figure at 10 and at 1200 dpi and refuses 9 and
    1201 with the same one line, before writing anything."""
    with_dpi = [cmd for cmd in COMMANDS if "--dpi" in run_cli(capsys, cmd, "--help")[1]]
    assert {"compare", "plot-sweep"} <= set(with_dpi)
    inputs = {"compare": [*pair], "plot-sweep": [sweep_file]}
    for cmd in with_dpi:
        assert cmd in inputs, f"give the test an input for `dmft {cmd}`"
        for dpi in (10, 1200):
            fig = tmp_path / f"{cmd}-{dpi}.svg"
            code, out, err = run_cli(capsys, cmd, *inputs[cmd], "--out", fig, "--dpi", dpi)
            assert code == 0, (cmd, dpi, err)
            assert fig.stat().st_size > 1000
        for dpi in (9, 1201, 0):
            fig = tmp_path / f"{cmd}-{dpi}.svg"
            code, out, err = run_cli(capsys, cmd, *inputs[cmd], "--out", fig, "--dpi", dpi)
            assert code == 1 and out == "", (cmd, dpi, out)
            one_line_error(err, f"`--dpi` must be an integer in [10, 1200]; got --dpi={dpi}")
            assert not fig.exists()
