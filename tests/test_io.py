"""HDF5 files: round trip, version checks, labelled dimensions, atomic writes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import time

import h5py
import numpy as np
import pytest
from _fakes import fake_trajectory

from dmft import DMFTInputError
from dmft.io import _format as io


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


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    good = fake_trajectory("dmft", steps=2)
    io.save(good, path)

    def boom(f, traj, command_line):
        f.create_dataset("half", data=np.zeros(10))
        raise RuntimeError("disk full")

    monkeypatch.setattr(io, "_write_contents", boom)
    # one message naming the real path (not the temporary one) and the cause
    with pytest.raises(io.DMFTInputError, match=r"cannot write .*run.h5: disk full; nothing was "
                                                r"written"):
        io.save(fake_trajectory("simulation", steps=2), path)
    assert io.load(path).kind == "dmft"
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]


_KILLED_WRITER = textwrap.dedent("""
    import sys, time
    sys.path.insert(0, {tests!r})
    import jax
    jax.config.update("jax_enable_x64", True)
    from _fakes import fake_trajectory
    from dmft import io

    real = io._write_contents

    def slow(f, traj, command_line):
        real(f, traj, command_line)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)  # killed here, mid-write, temp file open

    io._write_contents = slow
    io.save(fake_trajectory("simulation", steps=40, seeds=64), {path!r})
""")


def test_killed_write_keeps_good_file(tmp_path):
    """SIGKILL during a save: the old file is intact and no truncated file sits at the path."""
    path = tmp_path / "run.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    before = path.read_bytes()
    script = _KILLED_WRITER.format(tests=os.path.dirname(__file__), path=str(path))
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(
        [os.path.dirname(os.path.dirname(os.path.abspath(io.__file__)))]
        + [p for p in os.environ.get("PYTHONPATH", "").split(os.pathsep) if p]))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=env, text=True)
    try:
        line = proc.stdout.readline()  # blocks until the temp file is written and open
        assert line.strip() == "writing", proc.stderr.read()
        temps = [n for n in os.listdir(tmp_path) if ".tmp-" in n]
        assert temps == [f"run.h5.tmp-{proc.pid}"]
        os.kill(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
        proc.stdout.close()
        proc.stderr.close()
    assert proc.returncode == -signal.SIGKILL
    assert path.read_bytes() == before
    back = io.load(path)
    assert back.kind == "dmft" and back.steps == 2
    # what is left besides the good file is only the dead writer's pid-named temp file
    assert sorted(os.listdir(tmp_path)) == ["run.h5", f"run.h5.tmp-{proc.pid}"]
    # the next save keeps a recent one (its writer might be on another host)...
    stale = tmp_path / f"run.h5.tmp-{proc.pid}"
    io.save(fake_trajectory("dmft", steps=2), path)
    assert stale.exists()
    # ... and removes it once it is older than io.STALE_TEMP_S
    old = time.time() - io.STALE_TEMP_S - 10
    os.utime(stale, (old, old))
    io.save(fake_trajectory("dmft", steps=2), path)
    assert sorted(os.listdir(tmp_path)) == ["run.h5"]


def test_describe_lists_version_and_shapes(tmp_path):
    path = tmp_path / "dmft.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    text = io.describe(path)
    assert "dmft-trajectories 1.2" in text
    assert "kind:            dmft" in text
    assert "/m/value" in text and "(3, 2, 2)" in text


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
    from dmft.io import _format as io

    tr = dmft.solve(dmft.make_problem("he3", p=2, steps=2), 2000, replicas=2,
                    keep_replicas=True, progress=False)
    back = io.load(io.save(tr, tmp_path / "r.h5"))
    np.testing.assert_array_equal(back.per_seed["m"], tr.per_seed["m"])
