"""Reading without JAX: ``import dmft.io``, :func:`dmft.io.describe` and
``python -m dmft.io inspect FILE`` (output, exit codes, one-line errors)."""

from __future__ import annotations

import subprocess
import sys

import numpy as np
from _fakes import fake_trajectory, subprocess_env

from dmft import io
from dmft.features import FeaturesConfig, FeaturesResult


def _python(*args: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, *args], env=subprocess_env(), capture_output=True,
                          text=True, timeout=60)


def test_describe_lists_version_and_shapes(tmp_path):
    path = tmp_path / "dmft.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    text = io.describe(path)
    assert "dmft-trajectories 1.2" in text
    assert "kind:            dmft" in text
    assert "/m/value" in text and "(3, 2, 2)" in text


def test_io_attribute_and_no_jax():
    """``dmft.io`` is reachable as an attribute of ``dmft`` and imports neither JAX, equinox nor
    the CLI."""
    code = ("import sys, dmft; f = dmft.io.load; import dmft.io; "
            "print(callable(f), 'jax' in sys.modules, 'equinox' in sys.modules, "
            "'dmft.cli' in sys.modules, dmft.__version__)")
    res = _python("-c", code)
    assert res.returncode == 0, res.stderr
    callable_, jax_, eqx_, cli_, version = res.stdout.split()
    assert (callable_, jax_, eqx_, cli_) == ("True", "False", "False", "False")
    assert version  # "0+unknown" from a checkout, the package version when installed


def test_inspect_without_jax(tmp_path):
    path = tmp_path / "dmft.h5"
    io.save(fake_trajectory("dmft", steps=3), path)
    code = ("import sys, dmft.io; rc = dmft.io.main(['inspect', sys.argv[1]]); "
            "assert 'jax' not in sys.modules; raise SystemExit(rc)")
    res = _python("-c", code, str(path))
    assert res.returncode == 0, res.stderr
    assert "kind:            dmft" in res.stdout


def test_python_m_dmft_io_inspect(tmp_path):
    path = tmp_path / "sim.h5"
    io.save(fake_trajectory("simulation", steps=3, seeds=5), path,
            command_line="dmft simulate --target tanh_he3")
    res = _python("-m", "dmft.io", "inspect", str(path))
    assert res.returncode == 0, res.stderr
    assert res.stdout == io.describe(path) + "\n"
    assert res.stdout.startswith(f"file:            {path}\n")
    for line in ("format:          dmft-trajectories 1.2", "kind:            simulation",
                 "time_axis:       step", "command_line:    dmft simulate --target tanh_he3",
                 "  problem.target = \"tanh_he3\"", "  settings.seeds = 5"):
        assert line in res.stdout.splitlines(), line
    assert "/m/per_seed" in res.stdout and "(5, 4, 2, 2)" in res.stdout
    assert res.stderr == ""


def test_python_m_dmft_io_inspect_errors(tmp_path):
    missing = tmp_path / "missing.h5"
    res = _python("-m", "dmft.io", "inspect", str(missing))
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr == f"error: file not found: {missing}\n"
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    res = _python("-m", "dmft.io", "inspect", str(text))
    assert res.returncode == 1 and res.stdout == ""
    assert res.stderr.startswith("error: ") and "not an HDF5 file" in res.stderr
    assert len(res.stderr.splitlines()) == 1
    res = _python("-m", "dmft.io", "describe", str(text))
    assert res.returncode == 2 and res.stderr == "usage: python -m dmft.io inspect FILE\n"


def test_describe_features_file(tmp_path):
    """A ``dmft-features`` file is described with its FeaturesConfig (it has no problem)."""
    rng = np.random.default_rng(0)
    result = FeaturesResult(config=FeaturesConfig(d=16, steps=0, ridges=(0.1, 1.0)),
                            per_seed={"rf/eigenvalues": np.sort(rng.random((3, 16)), axis=1),
                                      "rf/test_error": rng.random((3, 2))},
                            maps=("rf",), settings={"seeds": 3, "seed": 0, "key_scheme": "k"})
    path = io.save_features(result, tmp_path / "features.h5")
    back = io.load(path)
    for name, arr in result.per_seed.items():
        np.testing.assert_array_equal(back.per_seed[name], arr)
    text = io.describe(path).splitlines()
    for line in ("format:          dmft-features 1.1", "kind:            features",
                 "  config.d = 16", "  config.ridges = [0.1, 1.0]", "  settings.seeds = 3"):
        assert line in text, line
    assert any(ln.startswith("  /rf/eigenvalues/per_seed") and "(3, 16)" in ln for ln in text)
