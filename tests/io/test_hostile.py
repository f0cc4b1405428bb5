"""Damaged and hostile files: every reader (``load``, ``load_sweep``, ``load_features``,
``describe`` and the ``inspect`` command) refuses them with one DMFTInputError that names the
file, the place inside it and what is wrong; valid files with unusual but harmless layouts still
load. Each file is built here from a valid one written by the package, then damaged with h5py."""

from __future__ import annotations

import json

import h5py
import numpy as np
import pytest
from _fakes import fake_trajectory, one_line_error, run_cli

from dmft import DMFTInputError, io
from dmft.io import _guard


def _traj_file(tmp_path, name: str = "run.h5", kind: str = "dmft"):
    path = tmp_path / name
    io.save(fake_trajectory(kind, steps=2), path)
    return path


def _features_file(tmp_path, name: str = "features.h5"):
    from dmft.features import FeaturesConfig, FeaturesResult

    rng = np.random.default_rng(0)
    result = FeaturesResult(config=FeaturesConfig(d=16, steps=0, ridges=(0.1, 1.0)),
                            per_seed={"rf/eigenvalues": np.sort(rng.random((3, 16)), axis=1),
                                      "rf/test_error": rng.random((3, 2))},
                            maps=("rf",), settings={"seeds": 3, "seed": 0, "key_scheme": "k"})
    return io.save_features(result, tmp_path / name)


def _sweep_file(tmp_path, name: str = "sweep.h5"):
    from dmft import Estimate
    from dmft._sweep import SweepResult

    runs = [fake_trajectory("dmft", steps=2, shift=s) for s in (0.0, 0.1)]
    obs = {o: Estimate(np.stack([getattr(t, o).value for t in runs]),
                       np.stack([getattr(t, o).error for t in runs]))
           for o in ("m", "Q", "test_error", "train_loss")}
    res = SweepResult("dmft", runs[0].problem, ["lr"], [np.array([0.1, 0.2])], np.arange(3),
                      np.array(["ok", "ok"]), np.array([-1, -1]), [], {"seed": 0}, **obs)
    return io.save_sweep(res, tmp_path / name)


def _refused(path, *words, reader=io.load) -> str:
    """``reader(path)`` raises DMFTInputError naming the file and every one of ``words``."""
    with pytest.raises(DMFTInputError) as exc:
        reader(path)
    msg = str(exc.value)
    assert str(path) in msg, msg
    for w in words:
        assert w in msg, (w, msg)
    return msg


# --------------------------------------------------------------------------------------------
# Sizes and dtypes
# --------------------------------------------------------------------------------------------


def test_huge_declared_shape_refused_before_reading(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["m/value"]
        f["m"].create_dataset("value", shape=(10**6, 10**6, 1), dtype="f8", chunks=(1, 1, 1))
    _refused(path, "/m/value", "(1000000, 1000000, 1)", "7.3 TiB", "on disk")
    # describing it reads no data: the shape is listed
    assert "(1000000, 1000000, 1)" in io.describe(path)


def test_many_datasets_share_one_read_limit(tmp_path, monkeypatch):
    """The limit counts all reads of one file: datasets each under it are refused together."""
    monkeypatch.setattr(_guard, "_FLOOR_BYTES", 0)
    monkeypatch.setattr(_guard, "_RATIO", 1)
    path = _traj_file(tmp_path)
    io.load(path)  # a valid file reads less than its own size
    n = int(0.7 * path.stat().st_size) // 8
    with h5py.File(path, "r+") as f:
        for name in ("big_a", "big_b"):
            f["diagnostics"].create_dataset(name, shape=(n,), dtype="f8", chunks=(64,))
    _refused(path, "/diagnostics/big_b", "all reads together")


def test_memory_error_on_read_becomes_input_error(tmp_path, monkeypatch):
    path = _traj_file(tmp_path)

    def no_memory(self, key):
        raise MemoryError("Unable to allocate")

    monkeypatch.setattr(h5py.Dataset, "__getitem__", no_memory)
    _refused(path, "does not fit in memory", "/")


def test_compound_dtype_refused(tmp_path):
    path = _traj_file(tmp_path)
    dtype = np.dtype([("a", "<f8"), ("b", "<i4")])
    with h5py.File(path, "r+") as f:
        del f["m/value"]
        f["m"].create_dataset("value", data=np.zeros((3, 2, 2), dtype))
    _refused(path, "/m/value", "[('a', '<f8'), ('b', '<i4')]", "expected a real-number")


def test_strings_where_numbers_expected_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["Q/error"]
        f["Q"].create_dataset("error", data=np.array(["a", "b"], dtype=h5py.string_dtype()))
    _refused(path, "/Q/error", "expected a real-number")


def test_empty_dataspace_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["step"]
        f["step"] = h5py.Empty("f8")
    _refused(path, "/step", "no data")


# --------------------------------------------------------------------------------------------
# Attributes: JSON, format_version, scalars
# --------------------------------------------------------------------------------------------


def test_deeply_nested_config_json_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["config_json"] = "[" * 100_000 + "]" * 100_000
    for reader in (io.load, io.describe):
        _refused(path, "config_json", "more than 64 levels", reader=reader)


def test_brackets_inside_json_strings_do_not_count(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["config_json"])
        config["settings"]["note"] = "[" * 500 + "{" * 500 + '\\"'
        f.attrs["config_json"] = json.dumps(config)
    assert io.load(path).settings["note"].startswith("[[[")
    assert not _guard.json_depth_exceeds(json.dumps({"a": "[" * 200}), 64)
    assert _guard.json_depth_exceeds("[" * 65 + "]" * 65, 64)
    assert not _guard.json_depth_exceeds("[" * 64 + "]" * 64, 64)


@pytest.mark.parametrize("version", ["1.1", "99.0", "abc", np.nan, np.array([1.0, 2.0]),
                                     np.array([1, 2, 3]), np.array([-1, 2])],
                         ids=["str-1.1", "str-99.0", "str-abc", "nan", "floats", "three",
                              "negative"])
def test_malformed_format_version_refused(tmp_path, version):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["format_version"] = version
    shown = "nan" if isinstance(version, float) else (
        repr(version) if isinstance(version, str) else "")
    for reader in (io.load, io.describe):
        _refused(path, "format_version", shown, "expected two integers", reader=reader)


def test_missing_format_version_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f.attrs["format_version"]
    _refused(path, "no attribute format_version")


def test_non_integer_first_bad_step_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["first_bad_step"] = "abc"
    _refused(path, "first_bad_step", "'abc'", "expected an integer")


def test_config_json_not_a_string_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["config_json"] = np.arange(3)
    _refused(path, "config_json", "expected a string")


# --------------------------------------------------------------------------------------------
# Links and data outside the file
# --------------------------------------------------------------------------------------------


def test_soft_link_loop_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["m"]
        f["m"] = h5py.SoftLink("/m2")
        f["m2"] = h5py.SoftLink("/m")
    for reader in (io.load, io.describe):
        _refused(path, "soft link /m", "loops", reader=reader)


def test_dangling_soft_link_refused(tmp_path):
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f["extra"] = h5py.SoftLink("/nowhere/at/all")
    _refused(path, "soft link /extra", "/nowhere/at/all", "does not exist")


def test_soft_link_within_the_file_still_loads(tmp_path):
    path = _traj_file(tmp_path)
    want = io.load(path)
    with h5py.File(path, "r+") as f:
        f.move("m", "m_stored")
        f["hop"] = h5py.SoftLink("m_stored")
        f["m"] = h5py.SoftLink("/hop")
        f["m_stored/again"] = f["m_stored"]  # a hard-link cycle: visited once, no hang
    back = io.load(path)
    np.testing.assert_array_equal(back.m.value, want.m.value)
    assert "/m_stored/value" in io.describe(path)


def test_external_link_refused(tmp_path):
    other = _traj_file(tmp_path, "other.h5", kind="simulation")
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["m"]
        f["m"] = h5py.ExternalLink(str(other), "/m")
    for reader in (io.load, io.describe):
        _refused(path, "/m is an external link", "other.h5", reader=reader)


def test_external_link_anywhere_refused(tmp_path):
    """Also where no reader looks, and behind a soft link."""
    other = _traj_file(tmp_path, "other.h5")
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f["diagnostics/elsewhere"] = h5py.ExternalLink(str(other), "/step")
    _refused(path, "/diagnostics/elsewhere", "external link")
    path = _traj_file(tmp_path, "behind.h5")
    with h5py.File(path, "r+") as f:
        f["a_soft"] = h5py.SoftLink("/z_external/value")  # visited before the external link
        f["z_external"] = h5py.ExternalLink(str(other), "/m")
    _refused(path, "soft link /a_soft", "leads out of the file", "/z_external")


def test_external_raw_storage_refused(tmp_path):
    """A dataset whose bytes live in another file (HDF5 external storage) is not read."""
    secret = tmp_path / "secret.bin"
    secret.write_bytes(np.arange(3, dtype="<f8").tobytes())
    path = _traj_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["step"]
        f.create_dataset("step", shape=(3,), dtype="<f8", external=[(str(secret), 0, 24)])
    _refused(path, "/step", "outside the file")


def test_virtual_dataset_refused(tmp_path):
    other = _traj_file(tmp_path, "other.h5")
    path = _traj_file(tmp_path)
    layout = h5py.VirtualLayout(shape=(3,), dtype="i8")
    layout[:] = h5py.VirtualSource(str(other), "step", shape=(3,))
    with h5py.File(path, "r+") as f:
        del f["step"]
        f.create_virtual_dataset("step", layout)
    _refused(path, "/step", "outside the file")


# --------------------------------------------------------------------------------------------
# Feature and sweep files
# --------------------------------------------------------------------------------------------


def test_features_file_without_config_refused(tmp_path):
    path = _features_file(tmp_path)
    with h5py.File(path, "r+") as f:
        config = json.loads(f.attrs["config_json"])
        del config["config"]
        f.attrs["config_json"] = json.dumps(config)
    for reader in (io.load, io.load_features):
        _refused(path, "config_json", "'config'", reader=reader)


def test_features_file_with_bad_json_refused(tmp_path):
    path = _features_file(tmp_path)
    with h5py.File(path, "r+") as f:
        f.attrs["config_json"] = '{"config": {"d": 16,'
    for reader in (io.load, io.describe):
        _refused(path, "config_json", "not valid JSON", reader=reader)


def test_features_file_huge_per_seed_refused(tmp_path):
    path = _features_file(tmp_path)
    with h5py.File(path, "r+") as f:
        del f["rf/test_error/per_seed"]
        f["rf/test_error"].create_dataset("per_seed", shape=(10**7, 10**6), dtype="f8",
                                          chunks=(1, 1))
    _refused(path, "/rf/test_error/per_seed", "on disk", reader=io.load_features)


def test_sweep_file_round_trip_and_hostile_parts(tmp_path):
    path = _sweep_file(tmp_path)
    back = io.load_sweep(path)
    assert back.axes == ["lr"] and list(back.status) == ["ok", "ok"]
    with h5py.File(path, "r+") as f:
        del f["status"]
        f["status"] = np.zeros(2)
    _refused(path, "/status", "expected a string array", reader=io.load_sweep)
    path = _sweep_file(tmp_path, "axes.h5")
    with h5py.File(path, "r+") as f:
        f.attrs["grid_axes"] = json.dumps([["lr"]])
    _refused(path, "grid_axes", "axis names", reader=io.load_sweep)
    path = _sweep_file(tmp_path, "link.h5")
    with h5py.File(path, "r+") as f:
        del f["grid/lr"]
        f["grid/lr"] = h5py.ExternalLink(str(tmp_path / "sweep.h5"), "/grid/lr")
    _refused(path, "/grid/lr", "external link", reader=io.load_sweep)


# --------------------------------------------------------------------------------------------
# The command line
# --------------------------------------------------------------------------------------------


def test_inspect_prints_one_error_line(tmp_path, capsys):
    linked = _traj_file(tmp_path, "linked.h5")
    other = _traj_file(tmp_path, "other.h5")
    with h5py.File(linked, "r+") as f:
        del f["m"]
        f["m"] = h5py.ExternalLink(str(other), "/m")
    version = _traj_file(tmp_path, "version.h5")
    with h5py.File(version, "r+") as f:
        f.attrs["format_version"] = "1.1"
    for path, words in ((linked, ("linked.h5", "/m", "external link")),
                        (version, ("version.h5", "format_version", "'1.1'"))):
        code, out, err = run_cli(capsys, "inspect", path)
        assert code == 1 and out == "", (code, out, err)
        one_line_error(err, *words)
        assert io.main(["inspect", str(path)]) == 1
        _, err = capsys.readouterr()
        one_line_error(err, *words)
