"""Saving and loading trajectories: one self-describing, versioned HDF5 file per run.

The layout is documented in ``docs/FORMAT.md``. In short: root attributes describe the file
(``format``, ``format_version``, provenance, the run's configuration as JSON); the root holds the
dimension scales (``step``, ``unit``, ...); each observable is a group with ``value`` and
``error`` datasets whose dimensions are labelled, so that h5py, h5netcdf and xarray all see named
axes::

    xarray.open_dataset("run.h5", engine="h5netcdf", group="m")

Files are written atomically: the data go to ``<path>.tmp-<pid>`` in the same folder, which is
flushed, closed and fsynced, then renamed onto ``<path>``. A crash at any point leaves either
the old file or the new one at ``<path>``, never a truncated one.

``import dmft.io`` needs only numpy and h5py: :func:`check_file` and :func:`describe` read a file
without JAX; :func:`load` also imports ``dmft.problem`` (JAX, equinox) to rebuild the
``Problem``. ``python -m dmft.io inspect FILE`` prints :func:`describe`.
"""

from __future__ import annotations

import datetime
import json
import os
import sys
import time

import h5py
import numpy as np

from .._errors import DMFTInputError
from ..observables._table import KERNEL_DIMS as TABLE_KERNEL_DIMS
from ..observables._table import KERNELS, OBSERVABLES, OPTIONAL

FORMAT = "dmft-trajectories"
FORMAT_VERSION = (1, 2)  # (major, minor): a major bump breaks readers, a minor bump only adds
KINDS = ("dmft", "simulation", "online", "flow")
# What /step holds, by kind (root attribute ``time_axis``, added in 1.1).
TIME_AXIS = {"dmft": "step", "simulation": "step", "online": "tau", "flow": "tau_gf"}

# names, dimensions and descriptions come from the one table (dmft/_table.py)
OBSERVABLE_DIMS = {name: e.dims for name, e in OBSERVABLES.items()}
KERNEL_DIMS = TABLE_KERNEL_DIMS
# present only when computed (a: trained second layer; test_loss: classification losses);
# additive in format 1.x
OPTIONAL_DIMS = {name: e.dims for name, e in OPTIONAL.items()}

_DESCRIPTIONS = {
    **{name: e.description for name, e in {**OBSERVABLES, **OPTIONAL, **KERNELS}.items()},
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


# --------------------------------------------------------------------------------------------
# Writing
# --------------------------------------------------------------------------------------------


def _json_default(obj):
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def config_dict(traj) -> dict:
    """Everything needed to rerun: the problem, the run kind and its settings."""
    return {"kind": traj.kind, "problem": traj.problem.to_dict(), "settings": dict(traj.settings)}


def save(traj, path, *, command_line: str | None = None) -> str:
    """Write ``traj`` (a :class:`~dmft.result.Trajectory`) to the HDF5 file ``path``, atomically.

    Works for partial (diverged) trajectories too: their ``status`` and ``first_bad_step`` are
    recorded. Returns the path written.

    Raises:
        DMFTInputError: ``traj`` is not a Trajectory, or ``path`` cannot be written (see
            :func:`check_output_path`).
    """
    from .._result import Trajectory

    if not isinstance(traj, Trajectory):
        raise DMFTInputError(
            f"`traj` must be a dmft.Trajectory (as returned by dmft.solve or dmft.simulate); "
            f"got {type(traj).__name__}"
        )
    path = check_output_path(path, suffixes=())
    return write_atomic(path, lambda f: _write_contents(f, traj, command_line))


def write_atomic(path, fill) -> str:
    """Write an HDF5 file with ``fill(h5py.File)`` atomically: to ``<path>.tmp-<pid>`` in the
    same folder, flushed, closed and fsynced, then renamed onto ``path`` (docs/FORMAT.md). Every
    dmft file (trajectories, sweeps, feature spectra) is written through here. A failure removes
    the temporary file; an OS error (e.g. a full disk) becomes one DMFTInputError naming it."""
    path = os.fspath(path)
    folder = os.path.dirname(os.path.abspath(path))
    try:
        os.makedirs(folder, exist_ok=True)
    except OSError as exc:
        raise DMFTInputError(f"cannot create the folder {folder!r} for {path!r}: "
                             f"{exc.strerror or exc}") from None
    tmp = f"{path}.tmp-{os.getpid()}"
    try:
        with h5py.File(tmp, "w") as f:
            fill(f)
            f.flush()
        _fsync_path(tmp)
        os.replace(tmp, path)
        _fsync_dir(folder)
    except BaseException as exc:
        try:
            os.remove(tmp)
        except (FileNotFoundError, IsADirectoryError, PermissionError):
            pass
        if isinstance(exc, (OSError, RuntimeError)):
            raise DMFTInputError(_write_failure(path, folder, exc)) from None
        raise
    _remove_stale_temps(path)
    return path


# room for the ".tmp-<pid>" of the atomic write (pids below 10**10) and a ".partial" stem
_TMP_SUFFIX_LEN = len(".tmp-") + 10
_PARTIAL_LEN = len(".partial")


def check_output_path(path, *, name: str = "out", suffixes=(".h5", ".hdf5"),
                      need_bytes: int = 0, partial: bool = False) -> str:
    """Check, before any compute, that ``path`` can be written; return it as a str.

    Checks: a file name with one of ``suffixes`` (when given); not an existing directory; a name
    short enough for the folder's file-system limit once the temporary suffix (and, with
    ``partial``, ".partial") is added; the nearest existing parent is a writable directory (a
    probe file is created and removed when the folder exists); at least ``need_bytes`` free in
    it. ``partial``: also check that ``<stem>.partial<ext>`` is not a directory.

    Raises:
        DMFTInputError: naming ``name``, the path and what is wrong.
    """
    try:
        path = os.fspath(path)
    except TypeError:
        raise DMFTInputError(f"`{name}` must be a file path; got {type(path).__name__}") from None
    if not path or path.endswith(os.sep):
        raise DMFTInputError(f"`{name}` must be a file name; got {name}={path!r}")
    if suffixes and not path.lower().endswith(tuple(suffixes)):
        raise DMFTInputError(
            f"`{name}` must be a file name ending in {' or '.join(suffixes)}; got {name}={path!r}"
        )
    if os.path.isdir(path):
        raise DMFTInputError(
            f"`{name}` must be a file name, not an existing directory; got {name}={path!r}"
        )
    if partial and os.path.isdir(partial_path(path)):
        raise DMFTInputError(
            f"`{name}`: the partial-results name {partial_path(path)!r} is an existing directory; "
            "remove it or choose another --out"
        )
    folder = os.path.dirname(os.path.abspath(path))
    base = os.path.basename(path)
    ancestor = folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise DMFTInputError(
            f"`{name}`: the parent {ancestor!r} of {path!r} is a file, not a directory"
        )
    try:
        name_max = os.pathconf(ancestor, "PC_NAME_MAX")
    except (OSError, ValueError, AttributeError):
        name_max = 255
    extra = _TMP_SUFFIX_LEN + (_PARTIAL_LEN if partial else 0)
    longest = max([len(os.fsencode(part)) for part in path.split(os.sep)] + [0])
    if len(os.fsencode(base)) + extra > name_max or longest > name_max:
        raise DMFTInputError(
            f"`{name}`: the file name is {len(os.fsencode(base))} bytes long; at most "
            f"{name_max - extra} are allowed here (the file system allows {name_max} per name, "
            f"and {extra} are needed for the temporary/partial suffixes); "
            f"got {name}={path[:40]!r}..."
        )
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DMFTInputError(f"`{name}`: the directory {ancestor!r} is not writable ({path!r})")
    if ancestor == folder:
        probe = os.path.join(folder, f".{base[:50]}.probe-{os.getpid()}")
        try:
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError as exc:
            raise DMFTInputError(
                f"`{name}`: cannot create files in {folder!r}: {exc.strerror or exc} ({path!r})"
            ) from None
    if need_bytes:
        try:
            st = os.statvfs(ancestor)
            free = st.f_bavail * st.f_frsize
        except (OSError, AttributeError):
            free = None
        if free is not None and free < need_bytes:
            raise DMFTInputError(
                f"`{name}`: the file needs about {need_bytes / 1e6:.1f} MB but only "
                f"{free / 1e6:.1f} MB are free in {ancestor!r}; free some space or choose "
                "another --out"
            )
    return path


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


def _free_bytes(folder: str):
    try:
        st = os.statvfs(folder)
        return st.f_bavail * st.f_frsize
    except (OSError, AttributeError):
        return None


# a temp file of a dead writer is removed by the next successful save to the same path once it
# is this old (a writer on another host sharing the folder keeps touching its file)
STALE_TEMP_S = 3600.0


def _remove_stale_temps(path: str) -> None:
    """Delete ``<path>.tmp-<pid>`` left by killed writers: pid not running here and untouched
    for ``STALE_TEMP_S`` seconds."""
    folder = os.path.dirname(os.path.abspath(path))
    prefix = os.path.basename(path) + ".tmp-"
    now = time.time()
    for name in os.listdir(folder):
        if not name.startswith(prefix) or not name[len(prefix):].isdigit():
            continue
        pid = int(name[len(prefix):])
        try:
            os.kill(pid, 0)
            continue  # alive (or not ours to signal): leave it
        except ProcessLookupError:
            pass
        except PermissionError:
            continue
        full = os.path.join(folder, name)
        try:
            if now - os.stat(full).st_mtime >= STALE_TEMP_S:
                os.remove(full)
        except FileNotFoundError:
            pass


def _write_failure(path: str, folder: str, exc: BaseException) -> str:
    """One sentence on why writing ``path`` failed (h5py's own error names the temporary file
    and, on a full disk, often only a follow-up error)."""
    import errno

    free = _free_bytes(folder)
    chain, seen = [], exc
    while seen is not None and len(chain) < 8:
        chain.append(seen)
        seen = seen.__cause__ or seen.__context__
    nospace = any(getattr(e, "errno", None) == errno.ENOSPC or "No space left" in str(e)
                  for e in chain)
    if nospace or (free is not None and free < 2**20):
        why = (f"no space left on the device ({'unknown' if free is None else free} bytes free "
               f"in {folder!r})")
    else:
        first = chain[-1]
        why = getattr(first, "strerror", None) or str(first).splitlines()[0]
    return f"cannot write {path}: {why}; nothing was written to {path}"


def _fsync_path(path: str) -> None:
    fd = os.open(path, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _fsync_dir(folder: str) -> None:
    try:
        fd = os.open(folder, os.O_RDONLY)
    except OSError:  # not possible on every platform; the rename itself is still atomic
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


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


def _package_version(name: str) -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version(name)
    except PackageNotFoundError:
        return "0+unknown"


def write_root_attrs(f: h5py.File, *, fmt: str, version, kind: str, config: dict, seed,
                     key_scheme: str, status: str, command_line: str | None, **extra) -> None:
    """The root attributes every dmft file carries (docs/FORMAT.md): file type and version,
    kind, configuration JSON, provenance, seed, key scheme and status; ``extra`` adds
    kind-specific ones (e.g. ``time_axis``)."""
    from .. import __version__

    f.attrs["format"] = fmt
    f.attrs["format_version"] = np.array(version, dtype=np.int64)
    f.attrs["kind"] = kind
    for key, val in extra.items():
        f.attrs[key] = val
    f.attrs["config_json"] = json.dumps(config, sort_keys=True, default=_json_default)
    f.attrs["creator"] = "dmft"
    f.attrs["creator_version"] = __version__
    f.attrs["jax_version"] = _package_version("jax")
    f.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    f.attrs["seed"] = int(seed)
    f.attrs["key_scheme"] = key_scheme
    f.attrs["status"] = status
    if command_line is not None:
        f.attrs["command_line"] = command_line


def _write_contents(f: h5py.File, traj, command_line: str | None) -> None:
    from .._rng import KEY_SCHEME

    if traj.kind not in KINDS:
        raise DMFTInputError(f"`kind` must be one of {list(KINDS)}; got kind={traj.kind!r}")
    problem = traj.problem
    T1 = len(traj.step)
    p, k = problem.p, problem.k
    config = config_dict(traj)

    write_root_attrs(f, fmt=FORMAT, version=FORMAT_VERSION, kind=traj.kind, config=config,
                     seed=traj.settings.get("seed", -1), key_scheme=KEY_SCHEME,
                     status=traj.status, command_line=command_line,
                     time_axis=TIME_AXIS[traj.kind], first_bad_step=int(traj.first_bad_step))

    # Scalar hyperparameters, one attribute each, for quick looks (config_json is authoritative).
    cfg = f.create_group("config")
    for key, val in config["problem"].items():
        if isinstance(val, (int, float, str)):
            cfg.attrs[key] = val
    for key, val in config["settings"].items():
        if isinstance(val, (int, float, str)) and not isinstance(val, bool):
            cfg.attrs[f"settings.{key}"] = val

    online = traj.kind == "online"
    step_dtype = np.float64 if traj.kind in ("online", "flow") else np.int64
    scales = {
        "step": f.create_dataset("step", data=np.asarray(traj.step, dtype=step_dtype)),
        "unit": _scale(f, "unit", p),
        "unit2": _scale(f, "unit2", p),
        "target_dir": _scale(f, "target_dir", k),
    }
    scales["step"].make_scale("step")
    scales["step"].attrs["long_name"] = _SCALE_DESCRIPTIONS[TIME_AXIS[traj.kind]]

    per_seed = traj.per_seed or {}
    if per_seed:  # simulation seeds, or DMFT replicas (solve(..., keep_replicas=True))
        n_seeds = next(iter(per_seed.values())).shape[0]
        scales["seed"] = _scale(f, "seed", n_seeds)
    if traj.kind == "dmft" and traj.kernels:
        scales["step_s"] = f.create_dataset("step_s", data=np.asarray(traj.step, dtype=np.int64))
        scales["step_s"].make_scale("step_s")
        scales["step_s"].attrs["long_name"] = _SCALE_DESCRIPTIONS["step_s"]

    count = traj.settings.get("seeds" if traj.kind == "simulation" else "replicas")
    error_meaning = {
        "dmft": "independent DMFT replicas",
        "simulation": "simulation seeds",
        "online": "independent Monte Carlo replicas of the online-SGD ODE",
        "flow": "independent DMFT replicas (Richardson-extrapolated replica by replica)",
    }[traj.kind]
    present = dict(OBSERVABLE_DIMS)
    present.update({n: d for n, d in OPTIONAL_DIMS.items() if getattr(traj, n, None) is not None})
    for name, dims in present.items():
        est = getattr(traj, name)
        g = f.create_group(name)
        description = _DESCRIPTIONS[name]
        if name == "test_error" and getattr(problem, "loss", "square") != "square":
            description = ("classification error P(sign f != y) on a fresh sample (loss "
                           f"{problem.loss}); the expected loss is in test_loss")
        elif name == "train_loss" and getattr(problem, "loss", "square") != "square":
            description = f"training loss (1/n) sum_nu loss(y_nu, f_nu), loss {problem.loss}"
        if online and name == "train_loss":
            description = "online SGD never reuses a sample: identical to test_error"
        g.attrs["long_name"] = description
        g.attrs["error_meaning"] = "standard error of the mean over " + error_meaning
        if count is not None:
            g.attrs["count"] = int(count)
        _labelled(g, "value", est.value, dims, scales, description)
        _labelled(g, "error", est.error, dims, scales, "standard error of value")
        if name in per_seed:
            _labelled(g, "per_seed", per_seed[name], ("seed",) + dims, scales,
                      _DESCRIPTIONS[name] + ", one row per seed")
        if T1 != np.shape(est.value)[0]:
            raise ValueError(f"{name}: {np.shape(est.value)[0]} steps but step has {T1}")

    if traj.kind == "dmft" and traj.kernels:
        kg = f.create_group("kernels")
        for name, est in traj.kernels.items():
            g = kg.create_group(name)
            g.attrs["long_name"] = _DESCRIPTIONS.get(name, name)
            _labelled(g, "value", est.value, KERNEL_DIMS, scales, _DESCRIPTIONS.get(name, name))
            _labelled(g, "error", est.error, KERNEL_DIMS, scales, "standard error of value")

    if traj.diagnostics:
        dg = f.create_group("diagnostics")
        for name, arr in traj.diagnostics.items():
            arr = np.asarray(arr)
            if arr.ndim == 1 and arr.shape[0] == T1:
                _labelled(dg, name, arr, ("step",), scales, _DESCRIPTIONS.get(name, name))
            else:
                dg.create_dataset(name, data=arr)


# --------------------------------------------------------------------------------------------
# Reading
# --------------------------------------------------------------------------------------------


def _attr_str(value) -> str:
    return value.decode() if isinstance(value, bytes) else str(value)


def check_file(path, fmt: str | None = None, reader_version=None) -> dict:
    """Open ``path``, check that it is a dmft file of a readable version; return root attrs.

    ``fmt`` None accepts both file types (``dmft-trajectories`` and ``dmft-features``), each
    checked against its own reader version; otherwise only ``fmt`` is accepted.

    Raises:
        DMFTInputError: missing file, not HDF5, not a dmft file, or an unknown major version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DMFTInputError(f"file not found: {path}")
    if not h5py.is_hdf5(path):
        raise DMFTInputError(f"{path} is not an HDF5 file (expected a {FORMAT} file)")
    try:
        with h5py.File(path, "r") as f:
            attrs = {key: f.attrs[key] for key in f.attrs}
    except OSError as exc:
        raise DMFTInputError(f"{path} cannot be read as HDF5: {exc}") from None
    found = _attr_str(attrs.get("format", ""))
    readers = {FORMAT: FORMAT_VERSION, FEATURES_FORMAT: FEATURES_VERSION}
    if fmt is not None:
        readers = {fmt: reader_version or readers[fmt]}
    if found not in readers:
        expected = " or ".join(repr(k) for k in readers)
        raise DMFTInputError(
            f"{path} is not a dmft file: attribute format={found!r}, expected {expected}"
        )
    own = readers[found]
    version = tuple(int(v) for v in np.atleast_1d(attrs.get("format_version", [-1, -1])))
    if len(version) != 2 or version[0] != own[0]:
        raise DMFTInputError(
            f"{path} has format_version {'.'.join(map(str, version))}, but this dmft reads "
            f"{found} format_version {own[0]}.x (this reader writes "
            f"{own[0]}.{own[1]}); use a dmft release that matches the "
            "file's major version"
        )
    return attrs


def _rebuild_problem(d: dict):
    """The Problem of ``config_json["problem"]``; a user target becomes a placeholder whose
    call says that the function is not stored (everything else, ``lr_a`` included, is kept)."""
    from ..model._problem import Problem
    from ..model._targets import TARGETS, unavailable_target

    if d["target"] in TARGETS:
        return Problem.from_dict(d)
    target = unavailable_target(d["target"], int(d["k"]), d.get("target_formula", ""))
    return Problem.from_dict(d, target=target)


def load(path):
    """Read a file written by :func:`save` back into a :class:`~dmft.result.Trajectory`
    (a ``dmft-features`` file is read by :func:`load_features`).

    Raises:
        DMFTInputError: the file is missing, not HDF5, not a dmft file, or of an unknown major
            format version (the message names the file's version and the supported one).
    """
    attrs = check_file(path)
    if _attr_str(attrs["format"]) == FEATURES_FORMAT:
        return load_features(path)
    kind = _attr_str(attrs.get("kind", ""))
    if kind == "sweep":
        raise DMFTInputError(
            f"{os.fspath(path)} is a sweep file (a grid of runs): read it with "
            "dmft.io.load_sweep, plot it with `dmft plot-sweep`")
    if kind not in KINDS:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute kind={kind!r} is not one of {list(KINDS)}; the file "
            "is damaged or was not written by dmft"
        )
    config = read_config(path, attrs)
    try:
        problem = _rebuild_problem(config["problem"])
    except DMFTInputError as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json is invalid: {exc}"
        ) from None
    except (KeyError, TypeError, ValueError, AttributeError) as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json does not describe a problem "
            f"({type(exc).__name__}: {exc}); the file does not follow {FORMAT} "
            f"{FORMAT_VERSION[0]}.x"
        ) from None
    try:
        traj = _read(path, attrs, problem, config)
    except (KeyError, OSError, TypeError) as exc:
        raise DMFTInputError(
            f"{os.fspath(path)} is incomplete or damaged ({exc}); it does not follow "
            f"{FORMAT} {FORMAT_VERSION[0]}.x"
        ) from None
    _check_shapes(path, traj)
    return traj


def read_config(path, attrs=None) -> dict:
    """The parsed ``config_json`` root attribute (a DMFTInputError if missing or invalid)."""
    attrs = check_file(path) if attrs is None else attrs
    if "config_json" not in attrs:
        raise DMFTInputError(
            f"{os.fspath(path)} has no attribute config_json; it does not follow {FORMAT} "
            f"{FORMAT_VERSION[0]}.x"
        )
    try:
        config = json.loads(_attr_str(attrs["config_json"]))
    except ValueError as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json is not valid JSON ({exc})"
        ) from None
    if not isinstance(config, dict) or not isinstance(config.get("problem"), dict):
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json has no 'problem' object; it does not "
            f"follow {FORMAT} {FORMAT_VERSION[0]}.x"
        )
    return config


def _check_shapes(path, traj) -> None:
    """Every observable has the shape that the file's problem and step axis imply."""
    T1, p, k = len(traj.step), traj.problem.p, traj.problem.k
    sizes = {"step": T1, "unit": p, "unit2": p, "target_dir": k}
    want = {name: tuple(sizes[d] for d in dims) for name, dims in
            {**OBSERVABLE_DIMS, **OPTIONAL_DIMS}.items() if getattr(traj, name) is not None}
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
    from .._result import Estimate, Trajectory

    with h5py.File(os.fspath(path), "r") as f:
        obs = {
            name: Estimate(f[name]["value"][()], f[name]["error"][()])
            for name in OBSERVABLE_DIMS
        }
        names = list(OBSERVABLE_DIMS) + [n for n in OPTIONAL_DIMS if n in f]
        optional = {n: Estimate(f[n]["value"][()], f[n]["error"][()]) if n in f else None
                    for n in OPTIONAL_DIMS}
        per_seed = None
        if any("per_seed" in f[name] for name in names):
            per_seed = {name: f[name]["per_seed"][()] for name in names if "per_seed" in f[name]}
        kernels = None
        if "kernels" in f:
            kernels = {
                name: Estimate(g["value"][()], g["error"][()]) for name, g in f["kernels"].items()
            }
        diagnostics = {}
        if "diagnostics" in f:
            diagnostics = {name: ds[()] for name, ds in f["diagnostics"].items()}
        step = f["step"][()]
    return Trajectory(
        kind=_attr_str(attrs["kind"]),
        problem=problem,
        step=step,
        m=obs["m"],
        Q=obs["Q"],
        test_error=obs["test_error"],
        train_loss=obs["train_loss"],
        kernels=kernels,
        per_seed=per_seed,
        **optional,
        diagnostics=diagnostics,
        settings=config.get("settings", {}),
        status=_attr_str(attrs.get("status", "ok")),
        first_bad_step=int(attrs.get("first_bad_step", -1)),
    )


def describe(path) -> str:
    """A human-readable summary: version, kind, status, provenance, config and every dataset."""
    attrs = check_file(path)
    version = ".".join(str(int(v)) for v in np.atleast_1d(attrs["format_version"]))
    lines = [f"file:            {os.fspath(path)}",
             f"format:          {_attr_str(attrs['format'])} {version}"]
    for key in ("kind", "time_axis", "status", "first_bad_step", "seed", "creator",
                "creator_version", "jax_version", "created", "key_scheme", "command_line"):
        if key in attrs:
            lines.append(f"{key + ':':<17}{_attr_str(attrs[key])}")
    config = read_config(path, attrs)
    lines.append("config:")
    for section in ("problem", "config", "settings"):
        for key, val in sorted(config.get(section, {}).items()):
            lines.append(f"  {section}.{key} = {json.dumps(val, default=_json_default)}")
    lines.append("datasets:")

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            dims = ", ".join(d.label or "?" for d in obj.dims)
            dims = "dimension scale" if obj.is_scale else dims
            lines.append(f"  /{name:<26} {str(obj.shape):<16} {str(obj.dtype):<8} ({dims})")

    with h5py.File(os.fspath(path), "r") as f:
        f.visititems(visit)
    return "\n".join(lines)


def partial_path(path) -> str:
    """``run.h5`` → ``run.partial.h5``: where a diverged run's partial results go."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(path)
    return f"{stem}.partial{ext or '.h5'}"


def main(argv=None) -> int:
    """``python -m dmft.io inspect FILE``: the same as ``dmft inspect FILE`` (without JAX)."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if len(argv) != 2 or argv[0] != "inspect":
        print("usage: python -m dmft.io inspect FILE", file=sys.stderr)
        return 2
    try:
        print(describe(argv[1]))
    except DMFTInputError as exc:
        print(f"error: {' '.join(str(exc).split())}", file=sys.stderr)
        return 1
    return 0



# --------------------------------------------------------------------------------------------
# Feature-spectrum files (kind = "features"): a sibling format with the same conventions
# --------------------------------------------------------------------------------------------

FEATURES_FORMAT = "dmft-features"
FEATURES_VERSION = (1, 0)

# dimensions of each per-seed output of dmft.features (after the leading seed axis)
_FEATURE_DIMS = {
    "eigenvalues": ("eig_index",),
    "top": ("top",),
    "overlap": ("top", "target_dir"),
    "n_outliers": (),
    "train_error": ("ridge",),
    "test_error": ("ridge",),
    "bulk_edge": (),
    "update_singular_values": ("sv_index",),
    "update_rest_norm2": (),
    "w1_step_spiked": (),
    "w1_step_rf": (),
}
_FEATURE_DESCRIPTIONS = {
    "eigenvalues": "eigenvalues of the feature covariance F^T F / n1, ascending",
    "top": "the largest eigenvalues of F^T F / n1, ascending",
    "overlap": "|cos| between W^T u (u: eigenvector of a top eigenvalue) and target direction i",
    "n_outliers": "eigenvalues above (1 + outlier_margin) x bulk_edge",
    "train_error": "ridge readout train error (1/n1) sum (y - f)^2 / 2, per ridge",
    "test_error": "ridge readout test error E[(y - f)^2 / 2] on fresh samples, per ridge",
    "bulk_edge": "largest eigenvalue of the features of the spike-free bulk W0 + Z",
    "update_singular_values": "leading singular values of the update W_T - W_0",
    "update_rest_norm2": "mean row norm^2 of the update beyond its spike (variance of Z times d)",
    "w1_step_spiked": "Wasserstein-1 distance between the spectra of step and spiked features",
    "w1_step_rf": "Wasserstein-1 distance between the spectra of step and rf features",
}


def _feature_dims(name: str) -> tuple:
    return _FEATURE_DIMS[name.rsplit("/", 1)[-1]]


def save_features(result, path, *, command_line: str | None = None) -> str:
    """Write a :class:`dmft.features.FeaturesResult` to ``path`` atomically (docs/FORMAT.md)."""
    return write_atomic(path, lambda f: _write_features(f, result, command_line))


def _write_features(f: h5py.File, result, command_line: str | None) -> None:
    cfg = result.config.to_dict()
    config = {"kind": "features", "config": cfg, "settings": dict(result.settings),
              "maps": list(result.maps)}
    write_root_attrs(f, fmt=FEATURES_FORMAT, version=FEATURES_VERSION, kind="features",
                     config=config, seed=result.settings.get("seed", -1),
                     key_scheme=str(result.settings.get("key_scheme", "")), status="ok",
                     command_line=command_line)
    g = f.create_group("config")
    for key, val in cfg.items():
        if isinstance(val, (int, float, str)) and not isinstance(val, bool):
            g.attrs[key] = val

    per_seed = result.per_seed
    S = result.seeds
    scales = {"seed": np.arange(S), "ridge": np.asarray(cfg["ridges"], dtype=np.float64),
              "eig_index": np.arange(cfg["p"]), "target_dir": np.arange(cfg["k"])}
    for name, arr in per_seed.items():
        for dim, n in zip(_feature_dims(name), np.shape(arr)[1:], strict=True):
            scales.setdefault(dim, np.arange(n))
    made = {}
    for dim, vals in scales.items():
        ds = f.create_dataset(dim, data=vals)
        ds.make_scale(dim)
        made[dim] = ds
    from .._result import estimate_from_replicas

    for name, arr in per_seed.items():
        arr = np.asarray(arr, dtype=np.float64)
        dims = _feature_dims(name)
        grp = f.require_group(name)
        desc = _FEATURE_DESCRIPTIONS[name.rsplit("/", 1)[-1]]
        grp.attrs["long_name"] = desc
        grp.attrs["error_meaning"] = "standard error of the mean over simulation seeds"
        grp.attrs["count"] = S
        est = estimate_from_replicas(arr)
        for key, data, ddims in (("value", est.value, dims), ("error", est.error, dims),
                                 ("per_seed", arr, ("seed",) + dims)):
            ds = grp.create_dataset(key, data=np.asarray(data, dtype=np.float64))
            for i, dim in enumerate(ddims):
                ds.dims[i].attach_scale(made[dim])
                ds.dims[i].label = dim
    if result.theory is not None:
        tg = f.create_group("theory/rf")
        tg.attrs["long_name"] = "d -> infinity closed form at initialization (dmft.rf_theory)"
        for key, vals in result.theory.items():
            ds = tg.create_dataset(key, data=np.asarray(vals, dtype=np.float64))
            ds.dims[0].attach_scale(made["ridge"])
            ds.dims[0].label = "ridge"


def load_features(path):
    """Read a file written by :func:`save_features` back into a ``FeaturesResult``."""
    from ..features._simulate import FeaturesConfig, FeaturesResult

    attrs = check_file(path, FEATURES_FORMAT, FEATURES_VERSION)
    config = json.loads(_attr_str(attrs["config_json"]))
    try:
        with h5py.File(os.fspath(path), "r") as f:
            per_seed = {}

            def visit(name, obj):
                if isinstance(obj, h5py.Dataset) and name.endswith("/per_seed"):
                    per_seed[name[: -len("/per_seed")]] = obj[()]

            f.visititems(visit)
            theory = None
            if "theory/rf" in f:
                theory = {k: v[()] for k, v in f["theory/rf"].items()}
    except (KeyError, OSError) as exc:
        raise DMFTInputError(
            f"{os.fspath(path)} is incomplete or damaged ({exc}); it does not follow "
            f"{FEATURES_FORMAT} {FEATURES_VERSION[0]}.x"
        ) from None
    return FeaturesResult(config=FeaturesConfig.from_dict(config["config"]), per_seed=per_seed,
                          maps=tuple(config.get("maps", ("rf",))),
                          settings=config.get("settings", {}), theory=theory)
