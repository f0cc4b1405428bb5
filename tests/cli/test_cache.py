"""The persistent compilation cache: a second CLI call of the same structure compiles nothing."""

import os
import subprocess
import sys

import pytest

ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def _run(tmp_path, out, lr, cache=True):
    env = dict(os.environ, PYTHONPATH=ROOT, DMFT_COMPILE_CACHE=str(tmp_path / "cache"))
    env.pop("DMFT_NO_COMPILE_CACHE", None)
    if not cache:
        env["DMFT_NO_COMPILE_CACHE"] = "1"
    cmd = [sys.executable, "-m", "dmft.cli", "solve", "--target", "he3", "--steps", "2",
           "--samples", "2000", "--replicas", "2", "--lr", str(lr), "--no-progress",
           "--out", str(tmp_path / out)]
    res = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert res.returncode == 0, res.stderr


@pytest.mark.slow
def test_second_call_loads_from_the_disk_cache(tmp_path):
    cache = tmp_path / "cache"
    _run(tmp_path, "a.h5", 0.3)
    first = sorted(os.listdir(cache))
    assert first, "nothing was cached"
    # another learning rate: same structure, so nothing new is compiled (and cached)
    _run(tmp_path, "b.h5", 0.7)
    assert sorted(os.listdir(cache)) == first


def test_cache_can_be_turned_off(tmp_path):
    _run(tmp_path, "c.h5", 0.3, cache=False)
    assert not (tmp_path / "cache").exists() or not os.listdir(tmp_path / "cache")
