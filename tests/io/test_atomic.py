"""Atomic writes: the output-path check, a failed or killed write that leaves the old file, a
full disk, and the removal of a dead writer's stale temporary file.

The faults are injected by replacing the trajectory writer ``dmft.io._trajectory._write_contents``
(the function that fills the temporary file), the one private name these tests use."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import textwrap
import time

import numpy as np
import pytest
from _fakes import fake_trajectory, subprocess_env

from dmft import DMFTInputError, io
from dmft.io import _trajectory


def test_failed_write_leaves_old_file_and_no_temp(tmp_path, monkeypatch):
    path = tmp_path / "run.h5"
    good = fake_trajectory("dmft", steps=2)
    io.save(good, path)

    def boom(f, traj, command_line):
        f.create_dataset("half", data=np.zeros(10))
        raise RuntimeError("disk full")

    monkeypatch.setattr(_trajectory, "_write_contents", boom)
    # one message naming the real path (not the temporary one) and the cause
    with pytest.raises(DMFTInputError, match=r"cannot write .*run.h5: disk full; nothing was "
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
    from dmft.io import _trajectory

    real = _trajectory._write_contents

    def slow(f, traj, command_line):
        real(f, traj, command_line)
        f.flush()
        print("writing", flush=True)
        time.sleep(60)  # killed here, mid-write, temp file open

    _trajectory._write_contents = slow
    io.save(fake_trajectory("simulation", steps=40, seeds=64), {path!r})
""")


def test_killed_write_keeps_good_file(tmp_path):
    """SIGKILL during a save: the old file is intact and no truncated file sits at the path."""
    path = tmp_path / "run.h5"
    io.save(fake_trajectory("dmft", steps=2), path)
    before = path.read_bytes()
    tests = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))  # where _fakes.py is
    script = _KILLED_WRITER.format(tests=tests, path=str(path))
    proc = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, env=subprocess_env(), text=True)
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


def test_free_space_and_full_disk(tmp_path, monkeypatch):
    with pytest.raises(DMFTInputError, match=r"`out`: the file needs about .* MB but only"):
        io.check_output_path(tmp_path / "x.h5", need_bytes=10**18)

    def full(*args, **kwargs):
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(_trajectory, "_write_contents", full)
    target = tmp_path / "x.h5"
    with pytest.raises(DMFTInputError) as info:
        io.save(fake_trajectory("dmft"), target)
    msg = str(info.value)
    assert "no space left on the device" in msg and f"nothing was written to {target}" in msg
    assert ".tmp-" not in msg and os.listdir(tmp_path) == []
