"""The solvers/<target>.py scripts: one per registered target, all built on
``dmft.cli.run_target``."""

from __future__ import annotations

import importlib.util

import h5py
import pytest
from _fakes import ROOT

from dmft import io
from dmft.model import TARGETS

SOLVERS = ROOT / "solvers"


def load_script(name: str):
    spec = importlib.util.spec_from_file_location(f"solver_{name}", SOLVERS / f"{name}.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    return mod


def test_one_script_per_target():
    assert sorted(p.stem for p in SOLVERS.glob("*.py")) == sorted(TARGETS)


@pytest.mark.parametrize("name", sorted(TARGETS))
def test_script_defaults_build_a_problem(name, capsys):
    """Each script's defaults are valid, and --help works without running anything."""
    from dmft.cli._common import problem_from_args
    from dmft.cli._runner import build_parser

    mod = load_script(name)
    args = build_parser(name, mod.DEFAULTS).parse_args([])
    args.target = name
    problem = problem_from_args(args)
    assert problem.target.name == name
    assert mod.main(["--help"]) == 0
    assert "--quick" in capsys.readouterr().out


def test_tanh_he3_quick_writes_files_and_figure(tmp_path, capsys):
    mod = load_script("tanh_he3")
    code = mod.main(["--quick", "--no-progress", "--out", str(tmp_path),
                     "--fig-dir", str(tmp_path)])
    out, err = capsys.readouterr()
    assert code == 0, err
    theory = io.load(tmp_path / "dmft.h5")
    sim = io.load(tmp_path / "simulation.h5")
    assert theory.kind == "dmft" and sim.kind == "simulation"
    assert theory.steps == 4 and sim.steps == 4  # --quick caps the published T = 6
    assert theory.settings["samples"] == 20_000
    assert sim.settings["d"] == 300 and sim.settings["seeds"] == 4
    with h5py.File(tmp_path / "dmft.h5", "r") as f:
        assert f.attrs["command_line"].startswith("solvers/tanh_he3.py --quick")
    png = tmp_path / "tanh_he3.png"
    assert png.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and png.stat().st_size > 20_000
    assert "max |z|" in out and str(png) in out


def test_bad_flag_exit_1(tmp_path, capsys):
    mod = load_script("tanh_he3")
    assert mod.main(["--quick", "--d", "0", "--out", str(tmp_path)]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and "`--d`" in err and err.count("\n") == 1


def test_devices_flag(tmp_path, capsys):
    """--devices 1 reaches both runs (the files' settings say 1); --devices 0 is one line, exit
    1, before any compute."""
    import jax

    mod = load_script("tanh_he3")
    small = ["--quick", "--samples", "640", "--replicas", "4", "--d", "60", "--seeds", "2",
             "--steps", "2", "--no-progress", "--out", str(tmp_path), "--fig-dir", str(tmp_path)]
    assert mod.main(small + ["--devices", "1"]) == 0, capsys.readouterr().err
    for name in ("dmft.h5", "simulation.h5"):
        assert io.load(tmp_path / name).settings["devices"] == 1
    capsys.readouterr()
    assert mod.main(["--quick", "--devices", "0", "--out", str(tmp_path / "no")]) == 1
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert "`--devices`" in err and f"[1, {len(jax.devices())}]" in err and "=0" in err
    assert not (tmp_path / "no").exists()
