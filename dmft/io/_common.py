"""What every dmft file type shares on the reading side: the format names and versions, the check
that opens a file and returns its root attributes, and the readers of the configuration.

Trajectory and sweep files are ``dmft-trajectories`` files; feature spectra are the sibling
``dmft-features`` type (docs/FORMAT.md). Nothing here imports JAX, except
:func:`rebuild_problem`, which needs ``dmft.model``.
"""

from __future__ import annotations

import os

import h5py
import numpy as np

from .._errors import DMFTInputError
from ._guard import open_file, parse_format_version, parse_json, str_attr

FORMAT = "dmft-trajectories"
FORMAT_VERSION = (1, 2)  # (major, minor): a major bump breaks readers, a minor bump only adds
FEATURES_FORMAT = "dmft-features"
FEATURES_VERSION = (1, 1)


def attr_str(value) -> str:
    """An HDF5 string attribute as ``str`` (h5py returns ``bytes`` for fixed-length strings)."""
    return value.decode() if isinstance(value, bytes) else str(value)


def json_default(obj):
    """``json.dumps`` fallback: numpy scalars and arrays as Python numbers and lists."""
    if isinstance(obj, np.generic):
        return obj.item()
    if isinstance(obj, np.ndarray):
        return obj.tolist()
    return str(obj)


def check_file(path, fmt: str | None = None, reader_version=None) -> dict:
    """Open ``path``, check that it is a dmft file of a readable version; return root attrs.

    ``fmt`` None accepts both file types (``dmft-trajectories`` and ``dmft-features``), each
    checked against its own reader version; otherwise only ``fmt`` is accepted.

    The file is opened through the guarded reader (``_guard``): its links are checked and its
    root attributes read with a size check; ``format_version`` must be two integers.

    Raises:
        DMFTInputError: missing file, not HDF5, not a dmft file, an external or looping link,
            a malformed ``format_version`` or an unknown major version.
    """
    path = os.fspath(path)
    if not os.path.exists(path):
        raise DMFTInputError(f"file not found: {path}")
    if not h5py.is_hdf5(path):
        raise DMFTInputError(f"{path} is not an HDF5 file (expected a {FORMAT} file)")
    with open_file(path) as reader:
        attrs = reader.attrs()
    found = attr_str(attrs.get("format", ""))
    readers = {FORMAT: FORMAT_VERSION, FEATURES_FORMAT: FEATURES_VERSION}
    if fmt is not None:
        readers = {fmt: reader_version or readers[fmt]}
    if found not in readers:
        expected = " or ".join(repr(k) for k in readers)
        raise DMFTInputError(
            f"{path} is not a dmft file: attribute format={found!r}, expected {expected}"
        )
    own = readers[found]
    version = parse_format_version(path, attrs)
    if version[0] != own[0]:
        raise DMFTInputError(
            f"{path} has format_version {'.'.join(map(str, version))}, but this dmft reads "
            f"{found} format_version {own[0]}.x (this reader writes "
            f"{own[0]}.{own[1]}); use a dmft release that matches the "
            "file's major version"
        )
    return attrs


def read_config(path, attrs=None) -> dict:
    """The parsed ``config_json`` root attribute of a trajectory or sweep file, which describes
    a problem (a DMFTInputError if missing or invalid)."""
    attrs = check_file(path) if attrs is None else attrs
    config = parse_config_json(path, attrs)
    if not isinstance(config, dict) or not isinstance(config.get("problem"), dict):
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json has no 'problem' object; it does not "
            f"follow {FORMAT} {FORMAT_VERSION[0]}.x"
        )
    if not isinstance(config.get("settings", {}), dict):
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json has 'settings' of type "
            f"{type(config['settings']).__name__}; expected an object"
        )
    return config


def parse_config_json(path, attrs: dict):
    """The ``config_json`` root attribute of any dmft file, parsed (a DMFTInputError naming
    ``path`` if it is missing or not JSON)."""
    fmt = attr_str(attrs.get("format", FORMAT))
    major = (FEATURES_VERSION if fmt == FEATURES_FORMAT else FORMAT_VERSION)[0]
    if "config_json" not in attrs:
        raise DMFTInputError(
            f"{os.fspath(path)} has no attribute config_json; it does not follow {fmt} {major}.x"
        )
    return parse_json(path, str_attr(path, attrs, "config_json"), "attribute config_json")


def read_problem(path, config: dict):
    """The Problem of a parsed ``config_json`` (see :func:`rebuild_problem`); a DMFTInputError
    naming ``path`` when it does not describe one."""
    try:
        return rebuild_problem(config["problem"])
    except DMFTInputError as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json is invalid: {exc}"
        ) from None
    except (LookupError, TypeError, ValueError, AttributeError, ArithmeticError) as exc:
        raise DMFTInputError(
            f"{os.fspath(path)}: attribute config_json does not describe a problem "
            f"({type(exc).__name__}: {exc}); the file does not follow {FORMAT} "
            f"{FORMAT_VERSION[0]}.x"
        ) from None


def rebuild_problem(d: dict):
    """The Problem of ``config_json["problem"]``; a user target becomes a placeholder whose
    call says that the function is not stored (everything else, ``lr_a`` included, is kept)."""
    from ..model import TARGETS, Problem, unavailable_target

    if d["target"] in TARGETS:
        return Problem.from_dict(d)
    target = unavailable_target(d["target"], int(d["k"]), d.get("target_formula", ""))
    return Problem.from_dict(d, target=target)


def expect_kind(path, attrs, kind: str, what: str) -> None:
    """Refuse a dmft file whose root ``kind`` is not ``kind`` (``what`` names the file type in
    the message), pointing to ``dmft.io.load``."""
    import os

    found = attr_str(attrs.get("kind", ""))
    if found != kind:
        raise DMFTInputError(f"{os.fspath(path)} is not {what} (kind={found!r}); use "
                             "dmft.io.load")
