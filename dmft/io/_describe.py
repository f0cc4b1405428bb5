"""Describing a dmft file for a reader: :func:`describe` and ``python -m dmft.io inspect FILE``.

Both read the root attributes and the layout with numpy and h5py only (no JAX), so any result
file can be looked at where the package's numerical dependencies are not installed.
"""

from __future__ import annotations

import json
import os
import sys

import h5py

from .._errors import DMFTInputError
from ._common import (
    FEATURES_FORMAT,
    attr_str,
    check_file,
    json_default,
    parse_config_json,
    read_config,
)
from ._guard import dtype_str, first_line, open_file, parse_format_version

_ROOT_KEYS = ("kind", "time_axis", "status", "first_bad_step", "seed", "creator",
              "creator_version", "jax_version", "created", "key_scheme", "command_line")


def describe(path) -> str:
    """A human-readable summary: version, kind, status, provenance, config and every dataset."""
    attrs = check_file(path)
    version = ".".join(map(str, parse_format_version(path, attrs)))
    lines = [f"file:            {os.fspath(path)}",
             f"format:          {attr_str(attrs['format'])} {version}"]
    for key in _ROOT_KEYS:
        if key in attrs:
            lines.append(f"{key + ':':<17}{attr_str(attrs[key])}")
    if attr_str(attrs["format"]) == FEATURES_FORMAT:  # a FeaturesConfig, no problem
        config = parse_config_json(path, attrs)
        if not isinstance(config, dict):
            raise DMFTInputError(f"{os.fspath(path)}: attribute config_json is not a JSON "
                                 "object; the file is damaged")
    else:
        config = read_config(path, attrs)
    lines.append("config:")
    for section in ("problem", "config", "settings"):
        entries = config.get(section, {})
        if not isinstance(entries, dict):
            raise DMFTInputError(f"{os.fspath(path)}: attribute config_json has {section!r} of "
                                 f"type {type(entries).__name__}; expected an object")
        for key, val in sorted(entries.items()):
            lines.append(f"  {section}.{key} = {json.dumps(val, default=json_default)}")
    lines.append("datasets:")

    def visit(name, obj):
        if isinstance(obj, h5py.Dataset):
            try:
                dims = ", ".join(d.label or "?" for d in obj.dims)
                dims = "dimension scale" if obj.is_scale else dims
                shape, dtype = obj.shape, dtype_str(obj.dtype)
            except (OSError, RuntimeError, TypeError, ValueError, KeyError) as exc:
                raise DMFTInputError(f"{os.fspath(path)}: /{name} cannot be described "
                                     f"({first_line(exc)}); the file is damaged") from None
            lines.append(f"  /{name:<26} {str(shape):<16} {dtype:<8} ({dims})")

    with open_file(path) as reader:
        reader.file.visititems(visit)
    return "\n".join(lines)


def main(argv=None) -> int:
    """``python -m dmft.io inspect FILE``: the same as ``dmft inspect FILE`` (without JAX).
    Exit status 0 after printing the description, 1 with one ``error:`` line on stderr for a
    file that cannot be read, 2 with a usage line for other arguments."""
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
