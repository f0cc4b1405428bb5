"""The small solves and simulations that tests/test_devices.py runs on 1, 2 and 4 devices
(in a subprocess with forced host devices, see tests/_multidevice_worker.py)."""

import dataclasses
import os
import tempfile
import warnings

import h5py
import jax

from dmft.io import save
from dmft.model import make_problem
from dmft.simulator import simulate
from dmft.solver import solve


def _solve(ndev, **kw):
    # Nesterov: the iterates' state and the map from the look-ahead points, per device
    pr = make_problem("tanh_he3", activation="erf", p=2, steps=3, schedule=kw.pop("schedule"),
                      momentum=0.5, nesterov=True)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)  # Γ noise at these tiny sizes
        res = solve(pr, seed=3, progress=False, keep_replicas=True, devices=ndev, **kw)
    out = {k: res.per_seed[k] for k in ("m", "Q", "train_loss")}
    out.update({k: res.kernels[k].value for k in ("C", "Gamma", "R")})
    return _record(res, out)


def _simulate(ndev):
    # seed_batch=2: on 2 devices one seed each (mesh (2, 1)); on 4, each seed's data rows over
    # 2 devices too (mesh (2, 2)); a last short batch (3 seeds); epochs:2 (the selection of
    # each device's rows), a sampled test set, a trained second layer, heavy-ball momentum
    pr = make_problem("tanh_he3", p=2, activation="relu", lr=0.3, steps=3, schedule="epochs:2",
                      lr_a=0.2, momentum=0.4)
    res = simulate(pr, d=40, seeds=3, seed=2, seed_batch=2, test_error="sample", n_test=30,
                   progress=False, devices=ndev)
    out = {k: res.per_seed[k] for k in ("m", "Q", "train_loss", "test_error", "a")}
    out["row_shards"] = res.settings.get("row_shards", 1)
    return _record(res, out)


def _record(res, out):
    """Settings, and the HDF5 file's /config attributes, record devices and processes."""
    out["devices"] = res.settings["devices"]
    out["processes"] = res.settings["processes"]
    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, f"run{jax.process_index()}.h5")
        # (io.save does not take a dmft trajectory's per-replica rows: no "seed" scale)
        save(res if res.kind == "simulation" else dataclasses.replace(res, per_seed=None), path)
        with h5py.File(path, "r") as f:
            out["h5_devices"] = f["config"].attrs["settings.devices"]
            out["h5_processes"] = f["config"].attrs["settings.processes"]
    return out


def cases():
    """name → run(device count) → dict of arrays."""
    return {
        # 2 replicas: on 2 devices replica sharding (mesh (2, 1)); on 4, each replica's samples
        # over 2 devices too (mesh (2, 2)); chunks, padding rows, the regressors' Gram summed
        # over devices (general schedule)
        "solve": lambda n: _solve(n, samples=2 * 150, replicas=2, schedule="sgd:0.5",
                                  chunk_size=40),
        "simulate": _simulate,
        # grid points over devices (3 points: padded to 4 on 4 devices); 1 and 4 devices of
        # one process only (a list of devices, the two-process form, is skipped)
        "sweep": lambda n: _sweep(n) if n in (1, 4) else None,
        # the online ODE's replicas over the devices of one process (4 replicas: 1, 2 or 4 per
        # device), and gradient flow through the solver's devices
        "online": lambda n: _online(n) if isinstance(n, int) else None,
        "flow": lambda n: _flow(n) if isinstance(n, int) else None,
    }


def _online(ndev):
    from dmft import solve_online

    pr = make_problem("tanh_he3", activation="erf", p=2, steps=3, lr=0.3)
    res = solve_online(pr, 1.0, 2000, n_out=5, replicas=4, seed=3, progress=False,
                       devices=ndev)
    return {"m": res.per_seed["m"] if res.per_seed else res.m.value, "Q": res.Q.value,
            "devices": res.settings["devices"], "processes": res.settings["processes"]}


def _flow(ndev):
    from dmft import solve_flow

    pr = make_problem("tanh_he3", activation="erf", p=2, steps=3)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = solve_flow(pr, 0.4, 2 * 150, dt=0.2, replicas=2, seed=3, progress=False,
                         devices=ndev)
    return {"m": res.m.value, "Q": res.Q.value, "devices": 1, "processes": 1}


def _sweep(ndev):
    from dmft import sweep

    pr = make_problem("tanh_he3", activation="erf", p=2, steps=3, schedule="reuse")
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)
        res = sweep(pr, over={"lr": [0.2, 0.3, 0.5]}, samples=2 * 120, replicas=2, seed=3,
                    progress=False, devices=ndev)
    return {"m": res.m.value, "Q": res.Q.value, "devices": res.settings["devices"],
            "processes": res.settings["processes"]}


def fits_only_when_sharded():
    """Free memory per device set (fake accelerator devices) between the per-device state of
    the "solve" case on 4 devices and on 1: refused on 1 device, run on 4."""
    from dmft import DMFTInputError
    from dmft.solver import _memory, _solve, memory_estimate

    pr = make_problem("tanh_he3", activation="erf", p=2, steps=3, schedule="sgd:0.5")
    kw = dict(samples=2 * 150, replicas=2, chunk_size=40)
    one = memory_estimate(pr, **kw)
    four = memory_estimate(pr, devices=4, **kw)
    budget = (four["state"] + one["state"]) // 2
    assert four["state"] < budget < one["state"]
    saved = _memory.free_memory_bytes, _memory.device_free_memory
    _memory.free_memory_bytes = lambda: (budget, "fake accelerator")
    _memory.device_free_memory = lambda devs: (budget, "fake accelerator", False)
    try:
        try:
            _solve.solve(pr, seed=3, progress=False, devices=1, **kw)
            refused = 0
        except DMFTInputError:
            refused = 1
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)
            warnings.simplefilter("ignore", ResourceWarning)  # the peak counts 0.3 GB runtime
            res = _solve.solve(pr, seed=3, progress=False, devices=4, **kw)
    finally:
        _memory.free_memory_bytes, _memory.device_free_memory = saved
    return {"fit/refused_1": refused, "fit/ran_4": int(res.settings["devices"] == 4),
            "fit/state_1": one["state"], "fit/state_4": four["state"]}
