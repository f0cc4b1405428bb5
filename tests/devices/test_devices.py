"""The solver and the simulator on several devices and several processes.

Multi-device runs need ``--xla_force_host_platform_device_count`` set before JAX is imported,
and this test process has imported it already (conftest), so they run in subprocesses
(tests/_multidevice_worker.py, cases in tests/_device_cases.py) with the flag in the
subprocess's environment only. Tolerance: 1e-11 relative to each array's largest entry (the
layouts change only the order of float sums; measured differences are ~1e-15).
"""

import os
import socket
import subprocess
import sys

import numpy as np
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.dirname(os.path.dirname(HERE))
WORKER = os.path.join(HERE, "_multidevice_worker.py")
RTOL = 1e-11

# subprocesses that compile every case on 1, 2 and 4 devices: minutes of CPU, run with -m slow
pytestmark = pytest.mark.slow


def _env():
    env = dict(os.environ)
    env["PYTHONPATH"] = ROOT + os.pathsep + env.get("PYTHONPATH", "")
    env.pop("XLA_FLAGS", None)
    env["JAX_PLATFORMS"] = "cpu"  # forced host devices, also on a machine with a GPU
    env["DMFT_NO_COMPILE_CACHE"] = "1"
    return env


def _run(args, timeout=600):
    return subprocess.Popen([sys.executable, WORKER] + args, env=_env(), cwd=ROOT,
                            stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _wait(procs, timeout=600):
    for p in procs:
        out, _ = p.communicate(timeout=timeout)
        assert p.returncode == 0, out[-4000:]


def _max_rel_diff(a, b):
    a, b = np.asarray(a, float), np.asarray(b, float)
    assert a.shape == b.shape
    return float(np.max(np.abs(a - b)) / max(1.0, float(np.max(np.abs(a)))))


def _compare(res, ndev_a, res_b, ndev_b):
    """max relative difference per array between device counts a (in res) and b (in res_b)."""
    diffs = {}
    for key in res:
        if key.startswith("fit/"):
            continue
        name, n, what = key.split("/")
        if n != str(ndev_a) or what.endswith(("devices", "processes", "row_shards")):
            continue
        diffs[f"{name}/{what}"] = _max_rel_diff(res[key], res_b[f"{name}/{ndev_b}/{what}"])
    return diffs


@pytest.fixture(scope="module")
def one_process(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("devices") / "one.npz")
    _wait([_run([path, "1,2,4"])])
    return dict(np.load(path))


@pytest.mark.parametrize("ndev", [2, 4])
def test_same_results_on_1_2_4_devices(one_process, ndev):
    """Replica sharding (2 replicas on 2 devices), replica and sample sharding (mesh (2, 2) on
    4 devices; chunks and padding rows), the simulator's seeds and a sweep's grid points (4
    devices): the same numbers on 1, 2 and 4 devices; settings and the HDF5 /config record the
    device count; the simulator's seeds over 2 devices, and seeds and rows (mesh (2, 2)) over 4."""
    res = one_process
    assert int(res[f"simulate/{ndev}/row_shards"]) == ndev // 2
    diffs = _compare(res, ndev, res, 1)
    print(f"{ndev} vs 1 device(s), max relative |diff|:", diffs)
    assert diffs and max(diffs.values()) < RTOL, diffs
    if ndev == 4:
        assert int(res["sweep/4/devices"]) == 4 and "sweep/m" in diffs
    for name in ("solve", "simulate"):
        for prefix in ("", "h5_"):
            assert int(res[f"{name}/{ndev}/{prefix}devices"]) == ndev
            assert int(res[f"{name}/{ndev}/{prefix}processes"]) == 1


def test_sharded_solve_fits_where_one_device_does_not(one_process):
    """With the free memory per device between the per-device state on 4 devices and on 1,
    the solve is refused on one device and runs on four; the state falls ~ 1/devices."""
    res = one_process
    assert int(res["fit/refused_1"]) == 1 and int(res["fit/ran_4"]) == 1
    ratio = float(res["fit/state_1"]) / float(res["fit/state_4"])
    assert 3.0 < ratio <= 4.0  # 3.4 here: kernels replicated over sample shards, padding


def _free_port():
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def test_two_processes_equal_one(one_process, tmp_path):
    """Two processes on localhost (jax.distributed, gloo CPU collectives), two host devices
    each: the 4 global devices give the single-process one-device numbers; the sample-sharded
    case reduces its sums across the two processes."""
    path = str(tmp_path / "two.npz")
    port = str(_free_port())
    _wait([_run([path, "4", str(i), "2", port]) for i in range(2)])
    two = dict(np.load(path))
    assert int(two["simulate/4/row_shards"]) == 2
    diffs = _compare(two, 4, one_process, 1)
    print("2 processes x 2 devices vs 1 device, max relative |diff|:", diffs)
    assert diffs and max(diffs.values()) < RTOL, diffs
    for name in ("solve", "simulate"):
        for prefix in ("", "h5_"):
            assert int(two[f"{name}/4/{prefix}devices"]) == 4
            assert int(two[f"{name}/4/{prefix}processes"]) == 2


def test_devices_argument_checked():
    """`devices` is None, a count in [1, available] or a list of distinct devices."""
    import jax

    from dmft import DMFTInputError
    from dmft._devices import resolve_devices

    assert resolve_devices(None) == jax.devices()
    assert resolve_devices(1) == jax.devices()[:1]
    assert resolve_devices(jax.devices()[:1]) == jax.devices()[:1]
    for bad in (0, len(jax.devices()) + 1, "gpu", [], [0], True):
        with pytest.raises(DMFTInputError, match="`devices`"):
            resolve_devices(bad)
    with pytest.raises(DMFTInputError, match="twice"):
        resolve_devices(jax.devices()[:1] * 2)
