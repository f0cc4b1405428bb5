"""Sweep files: one HDF5 file per :func:`dmft.sweep`, in the trajectory format (1.2).

Root attributes as for a trajectory file (``format``, ``format_version`` = [1, 2], provenance,
``config_json`` with the base problem, the settings and the axes), plus ``kind = "sweep"``,
``sweep_method`` (``dmft`` or ``simulation``) and ``grid_axes`` (JSON list, grid order).
Every observable group (``m``, ``Q``, ``test_error``, ``train_loss``) holds ``value`` and
``error`` with the grid dimensions in front: (axis_0, ..., axis_g, step, ...). Each axis has a
root dimension scale of its name (its values when they are scalars, else the point index) and
``grid/<name>`` holds the full coordinates ((n,) or (n,) + field shape). ``status`` (strings)
and ``first_bad_step`` have the grid's shape. Reading needs numpy and h5py only; with xarray::

    xarray.open_dataset("sweep.h5", engine="h5netcdf", group="m")   # dims (lr, alpha, step, ...)
"""

from __future__ import annotations

import json
import os

import numpy as np

from .._errors import DMFTInputError
from ._atomic import write_atomic, write_root_attrs
from ._common import (
    FORMAT,
    FORMAT_VERSION,
    check_file,
    expect_kind,
    read_config,
    read_problem,
)
from ._guard import open_file, parse_json, str_attr


def _observable_dims() -> dict:
    """name -> per-point dimensions of the observables a sweep stores, from the one table
    (imported here: ``dmft.observables`` imports JAX, which saving and loading need anyway)."""
    from ..observables import OBSERVABLES

    return {name: e.dims for name, e in OBSERVABLES.items()}


def save_sweep(result, path, *, command_line: str | None = None) -> str:
    """Write a :class:`dmft.SweepResult` to ``path`` atomically; returns the path."""
    from .._rng import KEY_SCHEME

    pr = result.problem
    axes = list(result.axes)
    config = {"kind": "sweep", "method": result.method, "problem": pr.to_dict(),
              "settings": dict(result.settings),
              "over": {n: np.asarray(c).tolist() for n, c in zip(axes, result.coords,
                                                                 strict=True)}}

    def fill(f):
        write_root_attrs(f, fmt=FORMAT, version=FORMAT_VERSION, kind="sweep", config=config,
                         seed=result.settings.get("seed", -1), key_scheme=KEY_SCHEME,
                         status="ok" if np.all(result.status == "ok") else "diverged",
                         command_line=command_line, sweep_method=result.method,
                         grid_axes=json.dumps(axes), time_axis="step")
        scales = {}
        for name, n in (("step", len(result.step)), ("unit", pr.p), ("unit2", pr.p),
                        ("target_dir", pr.k)):
            ds = f.create_dataset(name, data=np.arange(n, dtype=np.int64))
            ds.make_scale(name)
            scales[name] = ds
        grid = f.create_group("grid")
        for name, c in zip(axes, result.coords, strict=True):
            c = np.asarray(c, dtype=np.float64)
            grid.create_dataset(name, data=c)
            ds = f.create_dataset(name, data=c if c.ndim == 1 else np.arange(len(c)))
            ds.make_scale(name)
            ds.attrs["long_name"] = (f"grid axis {name}" if c.ndim == 1 else
                                     f"grid axis {name}: point index (values in grid/{name})")
            scales[name] = ds
        for obs, tail in _observable_dims().items():
            est = getattr(result, obs)
            g = f.create_group(obs)
            g.attrs["error_meaning"] = ("standard error of the mean over independent DMFT "
                                        "replicas" if result.method == "dmft" else
                                        "standard error of the mean over simulation seeds")
            dims = tuple(axes) + tail
            for part, arr in (("value", est.value), ("error", est.error)):
                ds = g.create_dataset(part, data=np.asarray(arr, dtype=np.float64))
                for i, dim in enumerate(dims):
                    ds.dims[i].attach_scale(scales[dim])
                    ds.dims[i].label = dim
        f.create_dataset("status", data=np.asarray(result.status).astype("S"))
        f.create_dataset("first_bad_step", data=np.asarray(result.first_bad_step, np.int64))

    return write_atomic(path, fill)


def load_sweep(path):
    """Read a sweep file back into a :class:`dmft.SweepResult` (no per-point kernels)."""
    from .._result import Estimate
    from .._sweep import SweepResult

    attrs = check_file(path)
    expect_kind(path, attrs, "sweep", "a sweep file")
    config = read_config(path, attrs)
    problem = read_problem(path, config)
    axes = parse_json(path, str_attr(path, attrs, "grid_axes"), "attribute grid_axes")
    if not isinstance(axes, list) or not all(isinstance(n, str) and n for n in axes):
        raise DMFTInputError(f"{os.fspath(path)}: attribute grid_axes is {axes!r}; expected a "
                             "JSON list of axis names")
    method = str_attr(path, attrs, "sweep_method")
    with open_file(path) as r:
        coords = [r.array(f"grid/{n}") for n in axes]
        est = {o: Estimate(r.array(f"{o}/value"), r.array(f"{o}/error"))
               for o in _observable_dims()}
        status = r.array("status", expect="string").astype(str)
        bad = r.array("first_bad_step", expect="integer")
        step = r.array("step")
    return SweepResult(method=method, problem=problem, axes=axes,
                       coords=coords, step=step, status=status, first_bad_step=bad, points=[],
                       settings=config.get("settings", {}), **est)
