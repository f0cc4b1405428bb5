"""Feature-spectrum files (``dmft-features``, kind ``features``): the results of
:func:`dmft.simulate_features`, a sibling file type with the conventions of trajectory files
(atomic write, named dimensions, value / error / per-seed) but a layout of its own
(docs/FORMAT.md, "Feature-spectrum files")."""

from __future__ import annotations

import os

import h5py
import numpy as np

from .._errors import DMFTInputError
from ._atomic import write_atomic, write_root_attrs
from ._common import FEATURES_FORMAT, FEATURES_VERSION, check_file, parse_config_json
from ._guard import open_file

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
    "step_overlap": ("gd_step", "target_dir"),
    "step_update_norm": ("gd_step",),
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
    "step_overlap": "||P_t e_i||, P_t the projector onto the top right singular vectors of "
                    "W_t - W_0 (N_TOP of them), after GD step t = gd_step",
    "step_update_norm": "||W_t - W_0||_F / sqrt(p) after GD step t = gd_step",
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
    scales = _write_feature_scales(f, result, cfg)
    _write_feature_groups(f, result, scales)
    if result.theory is not None:
        tg = f.create_group("theory/rf")
        tg.attrs["long_name"] = "d -> infinity closed form at initialization (dmft.rf_theory)"
        for key, vals in result.theory.items():
            ds = tg.create_dataset(key, data=np.asarray(vals, dtype=np.float64))
            ds.dims[0].attach_scale(scales["ridge"])
            ds.dims[0].label = "ridge"
    if result.step_theory is not None:
        _write_step_theory(f, result.step_theory, scales)


def _write_step_theory(f: h5py.File, theory: dict, scales: dict) -> None:
    """``/theory/step``: the d → ∞ after-step prediction; per-λ arrays on the ridge scale,
    the outliers, overlaps and the parameters of the equivalent model as plain datasets."""
    tg = f.create_group("theory/step")
    tg.attrs["long_name"] = ("d -> infinity theory after one giant step "
                             "(dmft.features_theory; errors are quadrature errors)")
    for key, vals in theory.items():
        arr = np.asarray(vals, dtype=np.float64)
        ds = tg.create_dataset(key, data=arr)
        if arr.ndim and arr.shape[0] == scales["ridge"].shape[0] and "error" in key.split("/")[-1]:
            ds.dims[0].attach_scale(scales["ridge"])
            ds.dims[0].label = "ridge"


def _write_feature_scales(f: h5py.File, result, cfg: dict) -> dict:
    """The root dimension scales, name -> dataset: seeds, ridges, eigenvalue and target indices,
    and an index for every other dimension the outputs have."""
    values = {"seed": np.arange(result.seeds),
              "ridge": np.asarray(cfg["ridges"], dtype=np.float64),
              "eig_index": np.arange(cfg["p"]), "target_dir": np.arange(cfg["k"])}
    if cfg["steps"] > 0:
        values["gd_step"] = np.arange(1, cfg["steps"] + 1)  # the step t after which it is taken
    for name, arr in result.per_seed.items():
        for dim, n in zip(_feature_dims(name), np.shape(arr)[1:], strict=True):
            values.setdefault(dim, np.arange(n))
    scales = {}
    for dim, vals in values.items():
        ds = f.create_dataset(dim, data=vals)
        ds.make_scale(dim)
        scales[dim] = ds
    return scales


def _write_feature_groups(f: h5py.File, result, scales: dict) -> None:
    """One group per output: mean over seeds (``value``), its standard error and ``per_seed``."""
    from .._result import estimate_from_replicas

    for name, arr in result.per_seed.items():
        arr = np.asarray(arr, dtype=np.float64)
        dims = _feature_dims(name)
        grp = f.require_group(name)
        grp.attrs["long_name"] = _FEATURE_DESCRIPTIONS[name.rsplit("/", 1)[-1]]
        grp.attrs["error_meaning"] = "standard error of the mean over simulation seeds"
        grp.attrs["count"] = result.seeds
        est = estimate_from_replicas(arr)
        for key, data, ddims in (("value", est.value, dims), ("error", est.error, dims),
                                 ("per_seed", arr, ("seed",) + dims)):
            ds = grp.create_dataset(key, data=np.asarray(data, dtype=np.float64))
            for i, dim in enumerate(ddims):
                ds.dims[i].attach_scale(scales[dim])
                ds.dims[i].label = dim


def load_features(path):
    """Read a file written by :func:`save_features` back into a ``FeaturesResult``; every
    dataset is read through the guarded reader (dtype and size checked)."""
    from ..features import FeaturesConfig, FeaturesResult

    attrs = check_file(path, FEATURES_FORMAT, FEATURES_VERSION)
    config = parse_config_json(path, attrs)
    if not isinstance(config, dict) or not isinstance(config.get("config"), dict):
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json has no 'config' object (the "
            f"FeaturesConfig); it does not follow {FEATURES_FORMAT} {FEATURES_VERSION[0]}.x")
    maps = config.get("maps", ["rf"])
    if not isinstance(maps, list) or not all(isinstance(m, str) for m in maps):
        raise DMFTInputError(f"{os.fspath(path)}: attribute config_json has maps={maps!r}; "
                             "expected a list of map names")
    settings = config.get("settings", {})
    if not isinstance(settings, dict):
        raise DMFTInputError(f"{os.fspath(path)}: attribute config_json has 'settings' of type "
                             f"{type(settings).__name__}; expected an object")
    try:
        features_config = FeaturesConfig.from_dict(config["config"])
    except DMFTInputError as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json is invalid: {exc}") from None
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json does not describe a FeaturesConfig "
            f"({type(exc).__name__}: {exc})") from None
    with open_file(path) as r:
        names = []

        def visit(name, obj):
            if isinstance(obj, h5py.Dataset) and name.endswith("/per_seed"):
                names.append(name)

        r.file.visititems(visit)
        per_seed = {name[: -len("/per_seed")]: r.array(name) for name in names}
        theory = None
        if r.has("theory/rf"):
            theory = {k: r.array(f"theory/rf/{k}") for k in r.group("theory/rf")}
        step_theory = None
        if r.has("theory/step"):
            names = []
            r.file["theory/step"].visititems(
                lambda name, obj: names.append(name) if isinstance(obj, h5py.Dataset) else None)
            step_theory = {k: r.array(f"theory/step/{k}") for k in names}
    return FeaturesResult(config=features_config, per_seed=per_seed, maps=tuple(maps),
                          settings=settings, theory=theory, step_theory=step_theory)
