"""Trajectory files: round trip, version checks, refusal of other and damaged files, labelled
dimensions."""

from __future__ import annotations

import json
import os

import h5py
import jax.numpy as jnp
import numpy as np
import pytest
from _fakes import fake_trajectory

from dmft import DMFTInputError, io
from dmft.model import custom_target, make_problem


def _assert_same(a, b):
    assert a.kind == b.kind
    assert a.status == b.status and a.first_bad_step == b.first_bad_step
    assert a.problem.to_dict() == b.problem.to_dict()
    assert a.settings == b.settings
    np.testing.assert_array_equal(a.step, b.step)
    for name in ("m", "Q", "test_error", "train_loss"):
        np.testing.assert_array_equal(a.observable(name).value, b.observable(name).value)
        np.testing.assert_array_equal(a.observable(name).error, b.observable(name).error)
    assert (a.kernels is None) == (b.kernels is None)
    for name, est in (a.kernels or {}).items():
        np.testing.assert_array_equal(est.value, b.kernels[name].value)
        np.testing.assert_array_equal(est.error, b.kernels[name].error)
    assert (a.per_seed is None) == (b.per_seed is None)
    for name, arr in (a.per_seed or {}).items():
        np.testing.assert_array_equal(arr, b.per_seed[name])
    assert set(a.diagnostics) == set(b.diagnostics)
    for name, arr in a.diagnostics.items():
        np.testing.assert_array_equal(arr, b.diagnostics[name])


@pytest.mark.parametrize("kind", ["dmft", "simulation"])
def test_round_trip(tmp_path, kind):
    traj = fake_trajectory(kind, steps=3)
    path = tmp_path / f"{kind}.h5"
    assert io.save(traj, path, command_line="dmft solve --target tanh_he3") == str(path)
    back = io.load(path)
    _assert_same(traj, back)
    with h5py.File(path, "r") as f:
        assert f.attrs["format"] == "dmft-trajectories"
        assert list(f.attrs["format_version"]) == [1, 2]
        assert f.attrs["kind"] == kind
        assert f.attrs["creator"] == "dmft"
        assert f.attrs["command_line"] == "dmft solve --target tanh_he3"
        assert f.attrs["status"] == "ok" and f.attrs["first_bad_step"] == -1
        assert f.attrs["seed"] == 0
        assert f.attrs["created"].endswith("+00:00")
        assert "jax_version" in f.attrs and "key_scheme" in f.attrs
        cfg = json.loads(f.attrs["config_json"])
        assert cfg["problem"]["target"] == "tanh_he3" and cfg["kind"] == kind
        assert f["config"].attrs["alpha"] == 3.0
        if kind == "dmft":
            assert f["kernels/C/value"].shape == (4, 4, 2, 2)
            assert f["diagnostics/min_schur_eig"].shape == (4,)
        else:
            assert f["m/per_seed"].shape == (4, 4, 2, 2)
    # a rerun from the stored configuration rebuilds the same problem
    from dmft.model import Problem

    assert Problem.from_dict(cfg["problem"]).to_dict() == traj.problem.to_dict()


def test_partial_trajectory_round_trip(tmp_path):
    traj = fake_trajectory("dmft", steps=3)
    traj.status, traj.first_bad_step = "diverged", 2
    io.save(traj, tmp_path / "run.partial.h5")
    back = io.load(tmp_path / "run.partial.h5")
    assert back.status == "diverged" and back.first_bad_step == 2
    assert io.partial_path("out/run.h5") == os.path.join("out", "run.partial.h5")


def test_unknown_major_version_refused(tmp_path):
    path = tmp_path / "future.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.array([2, 3])
    with pytest.raises(DMFTInputError) as exc:
        io.load(path)
    msg = str(exc.value)
    assert "2.3" in msg and "1.x" in msg and "1.2" in msg
    # a newer MINOR version is fine
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = np.array([1, 7])
    assert io.load(path).kind == "dmft"


def test_non_dmft_files_refused(tmp_path):
    other = tmp_path / "other.h5"
    with h5py.File(other, "w") as f:
        f.create_dataset("x", data=np.arange(3))
    with pytest.raises(DMFTInputError, match="not a dmft file"):
        io.load(other)
    text = tmp_path / "notes.h5"
    text.write_text("hello")
    with pytest.raises(DMFTInputError, match="not an HDF5 file"):
        io.load(text)
    with pytest.raises(DMFTInputError, match="not found"):
        io.load(tmp_path / "missing.h5")


def test_labelled_dimensions_xarray(tmp_path):
    xr = pytest.importorskip("xarray")
    pytest.importorskip("h5netcdf")
    path = tmp_path / "sim.h5"
    io.save(fake_trajectory("simulation", steps=3, seeds=5), path)
    with xr.open_dataset(path, engine="h5netcdf", group="m") as ds:
        assert ds["value"].dims == ("step", "unit", "target_dir")
        assert ds["per_seed"].dims == ("seed", "step", "unit", "target_dir")
        assert ds["value"].shape == (4, 2, 2)
    with xr.open_dataset(path, engine="h5netcdf", group="Q") as ds:
        assert ds["error"].dims == ("step", "unit", "unit2")
    with xr.open_dataset(path, engine="h5netcdf") as root:
        np.testing.assert_array_equal(root["step"].values, np.arange(4))


def test_labelled_dimensions_h5py(tmp_path):
    path = tmp_path / "dmft.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    with h5py.File(path, "r") as f:
        ds = f["kernels/R/value"]
        assert [d.label for d in ds.dims] == ["step", "step_s", "unit", "unit2"]
        assert ds.dims[0][0].name == "/step"
        assert [d.label for d in f["test_error/value"].dims] == ["step"]


def test_damaged_file_refused(tmp_path):
    path = tmp_path / "cut.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    with h5py.File(path, "r+") as f:
        del f["Q"]
    with pytest.raises(DMFTInputError, match="incomplete or damaged"):
        io.load(path)
    data = (tmp_path / "cut.h5").read_bytes()
    (tmp_path / "trunc.h5").write_bytes(data[: len(data) // 2])
    with pytest.raises(DMFTInputError):
        io.load(tmp_path / "trunc.h5")


def test_dmft_file_with_replicas_roundtrips(tmp_path):
    """A solve kept with its replicas (keep_replicas=True) saves and reloads them."""
    import dmft

    tr = dmft.solve(dmft.make_problem("he3", p=2, steps=2), 2000, replicas=2,
                    keep_replicas=True, progress=False)
    back = io.load(io.save(tr, tmp_path / "r.h5"))
    np.testing.assert_array_equal(back.per_seed["m"], tr.per_seed["m"])


def test_custom_target_keeps_lr_a(tmp_path):
    """A user target with a trained second layer reloads with its lr_a; the target itself is a
    placeholder that says the function is not stored."""
    tgt = custom_target(lambda z: jnp.tanh(z[..., 0] + z[..., 1]), k=2, name="mytanh")
    traj = fake_trajectory("dmft")
    traj.problem = make_problem(tgt, p=2, steps=3, lr=0.2, lr_a=0.3)
    traj.a = traj.m._replace(value=np.zeros((4, 2)), error=np.zeros((4, 2)))
    io.save(traj, tmp_path / "c.h5")
    back = io.load(tmp_path / "c.h5")
    np.testing.assert_array_equal(back.problem.second_layer_lr, [0.3, 0.3, 0.3])
    assert back.problem.target.name == "mytanh"
    with pytest.raises(DMFTInputError, match="not stored in the file"):
        back.problem.target(jnp.zeros((2, 1)))
