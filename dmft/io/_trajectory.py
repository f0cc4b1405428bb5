"""Trajectory files: one self-describing, versioned ``dmft-trajectories`` HDF5 file per run.

The layout is documented in ``docs/FORMAT.md``. In short: root attributes describe the file
(``format``, ``format_version``, provenance, the run's configuration as JSON); the root holds the
dimension scales (``step``, ``unit``, ...); each observable is a group with ``value`` and
``error`` datasets whose dimensions are labelled, so that h5py, h5netcdf and xarray all see named
axes::

    xarray.open_dataset("run.h5", engine="h5netcdf", group="m")

Names, dimensions and descriptions of the observables and kernels come from the one table,
``dmft/observables/_table.py``. It is imported inside :func:`save` and :func:`load`, which need
JAX anyway (they build or rebuild a ``Trajectory`` and its ``Problem``), so that ``import
dmft.io`` and :func:`~dmft.io.describe` stay free of JAX.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from .._errors import DMFTInputError
from ._atomic import check_output_path, write_atomic, write_root_attrs
from ._common import (
    FEATURES_FORMAT,
    FORMAT,
    FORMAT_VERSION,
    attr_str,
    check_file,
    read_config,
    read_problem,
)
from ._features import load_features
from ._guard import int_attr, open_file, str_attr

KINDS = ("dmft", "simulation", "online", "flow")
# What /step holds, by kind (root attribute ``time_axis``, added in format 1.1).
TIME_AXIS = {"dmft": "step", "simulation": "step", "online": "tau", "flow": "tau_gf"}

_DIAGNOSTIC_DESCRIPTIONS = {
    "min_schur_eig": "smallest eigenvalue of the Schur complement when appending step t to the "
    "Cholesky factor of Qperp (before clipping)",
    "jitter": "largest eigenvalue shift added to make the Schur complement positive definite",
    "min_schur_online": "smallest eigenvalue of Q - m m^T (replica means) at each save time of "
    "the online-SGD ODE",
}
_SCALE_DESCRIPTIONS = {
    "step": "GD step t (0 = initial condition)",
    "tau": "online SGD time tau = (SGD steps)/d = (samples seen)/d (0 = initial condition)",
    "tau_gf": "gradient-flow time tau = sum of learning rates (0 = initial condition)",
    "step_s": "earlier GD step s (second time argument of a kernel)",
    "unit": "student unit j",
    "unit2": "student unit l (second unit index)",
    "target_dir": "target direction i",
    "seed": "simulation seed index (DMFT files: replica index)",
}
_ERROR_MEANING = {
    "dmft": "independent DMFT replicas",
    "simulation": "simulation seeds",
    "online": "independent Monte Carlo replicas of the online-SGD ODE",
    "flow": "independent DMFT replicas (Richardson-extrapolated replica by replica)",
}


def _observable_dims() -> tuple[dict, dict]:
    """(always-present, optional) observables, name -> dimensions. The optional ones (``a``:
    trained second layer; ``test_loss``: classification losses) are stored only when computed,
    which is additive in format 1.x."""
    from ..observables import OBSERVABLES, OPTIONAL

    return ({name: e.dims for name, e in OBSERVABLES.items()},
            {name: e.dims for name, e in OPTIONAL.items()})


def _descriptions() -> dict:
    """name -> ``long_name`` of every observable, kernel and named diagnostic."""
    from ..observables import KERNELS, OBSERVABLES, OPTIONAL

    entries = {**OBSERVABLES, **OPTIONAL, **KERNELS}
    return {**{name: e.description for name, e in entries.items()}, **_DIAGNOSTIC_DESCRIPTIONS}


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def config_dict(traj) -> dict:
    """Everything needed to rerun: the problem, the run kind and its settings."""
    return {"kind": traj.kind, "problem": traj.problem.to_dict(), "settings": dict(traj.settings)}


def save(traj, path, *, command_line: str | None = None) -> str:
    """Write ``traj`` (a :class:`dmft.Trajectory`) to the HDF5 file ``path``, atomically.

    Works for partial (diverged) trajectories too: their ``status`` and ``first_bad_step`` are
    recorded. Returns the path written.

    Raises:
        DMFTInputError: ``traj`` is not a Trajectory, or ``path`` cannot be written (see
            :func:`~dmft.io.check_output_path`).
    """
    from .._result import Trajectory

    if not isinstance(traj, Trajectory):
        raise DMFTInputError(
            f"`traj` must be a dmft.Trajectory (as returned by dmft.solve or dmft.simulate); "
            f"got {type(traj).__name__}"
        )
    path = check_output_path(path, suffixes=())
    return write_atomic(path, lambda f: _write_contents(f, traj, command_line))


def estimate_file_bytes(kind: str, steps: int, p: int, k: int, seeds: int = 0) -> int:
    """An upper estimate of the size of a saved file (values and errors in float64, plus
    kernels for ``dmft``, per-seed arrays for ``simulation``, plus 1 MB of metadata)."""
    T1 = steps + 1
    per_step = p * k + p * p + 2 + p  # m, Q, test_error, train_loss, a
    size = 2 * 8 * T1 * per_step
    if kind == "dmft":
        size += 4 * 2 * 8 * T1 * T1 * p * p + 3 * 8 * T1
    if kind == "simulation":
        size += 8 * max(seeds, 1) * T1 * per_step
    return int(size + 2**20)


def _scale(f: h5py.File, name: str, n: int) -> h5py.Dataset:
    ds = f.create_dataset(name, data=np.arange(n, dtype=np.int64))
    ds.make_scale(name)
    ds.attrs["long_name"] = _SCALE_DESCRIPTIONS[name]
    return ds


def _labelled(group: h5py.Group, name: str, data, dims, scales, description: str):
    data = np.asarray(data, dtype=np.float64)
    if data.ndim != len(dims):
        raise ValueError(f"dataset {group.name}/{name}: shape {data.shape} does not match {dims}")
    ds = group.create_dataset(name, data=data)
    for i, dim in enumerate(dims):
        ds.dims[i].attach_scale(scales[dim])
        ds.dims[i].label = dim
    ds.attrs["long_name"] = description
    return ds


def _write_contents(f: h5py.File, traj, command_line: str | None) -> None:
    """Everything of one trajectory file: root attributes, ``/config``, scales, observables,
    kernels and diagnostics (docs/FORMAT.md)."""
    from .._rng import KEY_SCHEME

    if traj.kind not in KINDS:
        raise DMFTInputError(f"`kind` must be one of {list(KINDS)}; got kind={traj.kind!r}")
    config = config_dict(traj)
    write_root_attrs(f, fmt=FORMAT, version=FORMAT_VERSION, kind=traj.kind, config=config,
                     seed=traj.settings.get("seed", -1), key_scheme=KEY_SCHEME,
                     status=traj.status, command_line=command_line,
                     time_axis=TIME_AXIS[traj.kind], first_bad_step=int(traj.first_bad_step))
    _write_config_group(f, config)
    scales = _write_scales(f, traj)
    descriptions = _descriptions()
    _write_observables(f, traj, scales, descriptions)
    if traj.kind == "dmft" and traj.kernels:
        from ..observables import KERNEL_DIMS

        kg = f.create_group("kernels")
        for name, est in traj.kernels.items():
            g = kg.create_group(name)
            description = descriptions.get(name, name)
            g.attrs["long_name"] = description
            _labelled(g, "value", est.value, KERNEL_DIMS, scales, description)
            _labelled(g, "error", est.error, KERNEL_DIMS, scales, "standard error of value")
    if traj.diagnostics:
        T1 = len(traj.step)
        dg = f.create_group("diagnostics")
        for name, arr in traj.diagnostics.items():
            arr = np.asarray(arr)
            if arr.ndim == 1 and arr.shape[0] == T1:
                _labelled(dg, name, arr, ("step",), scales, descriptions.get(name, name))
            else:
                dg.create_dataset(name, data=arr)


def _write_config_group(f: h5py.File, config: dict) -> None:
    """Scalar hyperparameters, one attribute each, for quick looks (config_json is
    authoritative)."""
    cfg = f.create_group("config")
    for key, val in config["problem"].items():
        if isinstance(val, (int, float, str)):
            cfg.attrs[key] = val
    for key, val in config["settings"].items():
        if isinstance(val, (int, float, str)) and not isinstance(val, bool):
            cfg.attrs[f"settings.{key}"] = val


def _write_scales(f: h5py.File, traj) -> dict:
    """The root dimension scales of ``traj``, name -> dataset: ``step`` (float64 time for the
    continuous-time kinds), ``unit``, ``unit2``, ``target_dir``, and ``seed`` / ``step_s`` when
    per-seed arrays / kernels are stored."""
    p, k = traj.problem.p, traj.problem.k
    step_dtype = np.float64 if traj.kind in ("online", "flow") else np.int64
    scales = {
        "step": f.create_dataset("step", data=np.asarray(traj.step, dtype=step_dtype)),
        "unit": _scale(f, "unit", p),
        "unit2": _scale(f, "unit2", p),
        "target_dir": _scale(f, "target_dir", k),
    }
    scales["step"].make_scale("step")
    scales["step"].attrs["long_name"] = _SCALE_DESCRIPTIONS[TIME_AXIS[traj.kind]]
    if traj.per_seed:  # simulation seeds, or DMFT replicas (solve(..., keep_replicas=True))
        n_seeds = next(iter(traj.per_seed.values())).shape[0]
        scales["seed"] = _scale(f, "seed", n_seeds)
    if traj.kind == "dmft" and traj.kernels:
        scales["step_s"] = f.create_dataset("step_s", data=np.asarray(traj.step, dtype=np.int64))
        scales["step_s"].make_scale("step_s")
        scales["step_s"].attrs["long_name"] = _SCALE_DESCRIPTIONS["step_s"]
    return scales


def _observable_description(name: str, traj, descriptions: dict) -> str:
    """The ``long_name`` of observable ``name``: the table's, except where the loss or the
    online kind change what ``test_error`` / ``train_loss`` hold."""
    loss = getattr(traj.problem, "loss", "square")
    if traj.kind == "online" and name == "train_loss":
        return "online SGD never reuses a sample: identical to test_error"
    if name == "test_error" and loss != "square":
        return ("classification error P(sign f != y) on a fresh sample (loss "
                f"{loss}); the expected loss is in test_loss")
    if name == "train_loss" and loss != "square":
        return f"training loss (1/n) sum_nu loss(y_nu, f_nu), loss {loss}"
    return descriptions[name]


def _write_observables(f: h5py.File, traj, scales: dict, descriptions: dict) -> None:
    """One group per observable present: ``value``, ``error`` and (when kept) ``per_seed``."""
    T1 = len(traj.step)
    per_seed = traj.per_seed or {}
    count = traj.settings.get("seeds" if traj.kind == "simulation" else "replicas")
    required, optional = _observable_dims()
    present = dict(required)
    present.update({n: d for n, d in optional.items() if getattr(traj, n, None) is not None})
    for name, dims in present.items():
        est = getattr(traj, name)
        g = f.create_group(name)
        description = _observable_description(name, traj, descriptions)
        g.attrs["long_name"] = description
        g.attrs["error_meaning"] = "standard error of the mean over " + _ERROR_MEANING[traj.kind]
        if count is not None:
            g.attrs["count"] = int(count)
        _labelled(g, "value", est.value, dims, scales, description)
        _labelled(g, "error", est.error, dims, scales, "standard error of value")
        if name in per_seed:
            _labelled(g, "per_seed", per_seed[name], ("seed",) + dims, scales,
                      descriptions[name] + ", one row per seed")
        if T1 != np.shape(est.value)[0]:
            raise ValueError(f"{name}: {np.shape(est.value)[0]} steps but step has {T1}")


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def load(path):
    """Read a file written by :func:`save` back into a :class:`dmft.Trajectory`
    (a ``dmft-features`` file is read by :func:`~dmft.io.load_features`).

    Raises:
        DMFTInputError: the file is missing, not HDF5, not a dmft file, or of an unknown major
            format version (the message names the file's version and the supported one).
    """
    attrs = check_file(path)
    if attr_str(attrs["format"]) == FEATURES_FORMAT:
        return load_features(path)
    kind = attr_str(attrs.get("kind", ""))
    if kind == "sweep":
        raise DMFTInputError(
            f"{os.fspath(path)} is a sweep file (a grid of runs): read it with "
            "dmft.io.load_sweep, plot it with `dmft plot-sweep`")
    if kind == "optimize":
        raise DMFTInputError(
            f"{os.fspath(path)} is an optimisation file (dmft.optimize): read it with "
            "dmft.io.load_optimize")
    if kind not in KINDS:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute kind={kind!r} is not one of {list(KINDS)}; the file "
            "is damaged or was not written by dmft"
        )
    config = read_config(path, attrs)
    problem = read_problem(path, config)
    try:
        traj = _read(path, attrs, problem, config)
    except (KeyError, OSError, TypeError) as exc:
        raise DMFTInputError(
            f"{os.fspath(path)} is incomplete or damaged ({exc}); it does not follow "
            f"{FORMAT} {FORMAT_VERSION[0]}.x"
        ) from None
    _check_shapes(path, traj)
    return traj


def _check_shapes(path, traj) -> None:
    """Every observable has the shape that the file's problem and step axis imply."""
    T1, p, k = len(traj.step), traj.problem.p, traj.problem.k
    sizes = {"step": T1, "unit": p, "unit2": p, "target_dir": k}
    required, optional = _observable_dims()
    want = {name: tuple(sizes[d] for d in dims) for name, dims in
            {**required, **optional}.items() if getattr(traj, name) is not None}
    for name, shape in want.items():
        est = getattr(traj, name)
        for part in ("value", "error"):
            got = np.shape(getattr(est, part))
            if got != shape:
                raise DMFTInputError(
                    f"{os.fspath(path)}: dataset /{name}/{part} has shape {got}, but the file's "
                    f"problem (p={p}, k={k}) and {T1} steps need {shape}; the file is damaged"
                )


def _read(path, attrs, problem, config):
    """The Trajectory held by ``path``: every dataset is read through the guarded reader
    (dtype and size checked, data stored in this file)."""
    from .._result import Estimate, Trajectory

    required, optional_dims = _observable_dims()
    kind = str_attr(path, attrs, "kind")
    status = str_attr(path, attrs, "status", default="ok")
    first_bad_step = int_attr(path, attrs, "first_bad_step", -1)
    with open_file(path) as r:

        def estimate(prefix):
            return Estimate(r.array(f"{prefix}/value"), r.array(f"{prefix}/error"))

        obs = {name: estimate(name) for name in required}
        names = list(required) + [n for n in optional_dims if r.has(n)]
        optional = {n: estimate(n) if r.has(n) else None for n in optional_dims}
        per_seed = {name: r.array(f"{name}/per_seed") for name in names
                    if "per_seed" in r.group(name)}
        kernels = None
        if r.has("kernels"):
            kernels = {name: estimate(f"kernels/{name}") for name in r.group("kernels")}
        diagnostics = {}
        if r.has("diagnostics"):
            diagnostics = {name: r.array(f"diagnostics/{name}")
                           for name in r.group("diagnostics")}
        step = r.array("step")
    return Trajectory(
        kind=kind,
        problem=problem,
        step=step,
        observables={**obs, **optional},
        kernels=kernels,
        per_seed=per_seed or None,
        diagnostics=diagnostics,
        settings=config.get("settings", {}),
        status=status,
        first_bad_step=first_bad_step,
    )
