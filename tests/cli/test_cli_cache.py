"""A damaged compilation-cache entry costs one warning line, never JAX's one per program."""

from __future__ import annotations

import subprocess
import sys
import warnings

import pytest
from _fakes import ROOT, subprocess_env

from dmft._cache import JAX_CACHE_READ_ERROR, _readable_header, remove_unreadable_entries
from dmft.cli._guard import user_warnings

ZLIB_HEAD = b"\x78\x9c"  # what zlib.compress writes first
ZSTD_HEAD = b"\x28\xb5\x2f\xfd"


def test_unreadable_entries_are_removed(tmp_path):
    (tmp_path / "jit_a-1-cache").write_bytes(b"garbage\n")
    (tmp_path / "jit_a-1-atime").write_bytes(b"12345678")
    (tmp_path / "jit_b-2-cache").write_bytes(b"")
    (tmp_path / "jit_c-3-cache").write_bytes(ZLIB_HEAD + b"rest")
    (tmp_path / "jit_d-4-cache").write_bytes(ZSTD_HEAD + b"rest")
    (tmp_path / "notes.txt").write_bytes(b"garbage")  # not an entry: left alone
    assert sorted(remove_unreadable_entries(str(tmp_path))) == ["jit_a-1-cache", "jit_b-2-cache"]
    assert sorted(p.name for p in tmp_path.iterdir()) == ["jit_c-3-cache", "jit_d-4-cache",
                                                          "notes.txt"]
    assert _readable_header(ZLIB_HEAD) and _readable_header(ZSTD_HEAD)
    assert not _readable_header(b"ga") and not _readable_header(b"")


def test_jax_read_warnings_collapse_to_one_line(tmp_path, capsys, monkeypatch):
    monkeypatch.setenv("DMFT_COMPILE_CACHE", str(tmp_path / "c"))
    with user_warnings():
        for name in ("jit_a", "jit_b", "jit_c"):
            warnings.warn(f"{JAX_CACHE_READ_ERROR} for '{name}': error: Error -3 while "
                          "decompressing data: incorrect header check", UserWarning)
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [f"warning: some entries of the compilation cache {tmp_path / 'c'} could not "
                   "be read; they were ignored and the programs compiled again (delete that "
                   "folder if this repeats)"]


def _features(cache, out):
    env = subprocess_env(DMFT_COMPILE_CACHE=str(cache))
    env.pop("DMFT_NO_COMPILE_CACHE", None)
    cmd = [sys.executable, "-m", "dmft.cli", "features", "--quick", "--steps", "0", "--seeds",
           "2", "--ridges", "1", "--d", "16", "--no-progress", "--out", str(out)]
    return subprocess.run(cmd, env=env, cwd=ROOT, capture_output=True, text=True, timeout=300)


@pytest.mark.slow
def test_corrupted_cache_is_one_warning_line(tmp_path):
    cache = tmp_path / "cache"
    first = _features(cache, tmp_path / "a.h5")
    assert first.returncode == 0 and first.stderr == "", first.stderr
    entries = [p for p in cache.iterdir() if p.name.endswith("-cache")]
    assert entries
    for p in cache.iterdir():  # every file of the folder
        p.write_bytes(b"garbage\n")
    again = _features(cache, tmp_path / "b.h5")
    assert again.returncode == 0, again.stderr
    lines = again.stderr.strip().splitlines()
    assert len(lines) == 1, again.stderr
    assert lines[0].startswith("warning: ") and str(cache) in lines[0]
    assert f"had {len(entries)} unreadable entries; removed" in lines[0]
    # rewritten: the next run is silent
    assert _features(cache, tmp_path / "c.h5").stderr == ""
    # damage past the header (JAX's own read error): still one line
    for p in cache.iterdir():
        if p.name.endswith("-cache"):
            p.write_bytes(ZLIB_HEAD + b"garbage")
    damaged = _features(cache, tmp_path / "d.h5")
    assert damaged.returncode == 0, damaged.stderr
    lines = damaged.stderr.strip().splitlines()
    assert len(lines) == 1 and str(cache) in lines[0] and "could not be read" in lines[0], \
        damaged.stderr
