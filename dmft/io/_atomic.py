"""Writing dmft files safely: the output-path check done before any compute, the atomic write
every file type goes through, and the root attributes every file carries.

A file is written to ``<path>.tmp-<pid>`` in the same folder, which is flushed, closed and
fsynced, then renamed onto ``<path>``. A crash at any point leaves either the old file or the
new one at ``<path>``, never a truncated one; a dead writer's temporary file is removed by a
later save once it is stale (docs/FORMAT.md, "Atomic writes").
"""

from __future__ import annotations

import datetime
import errno
import json
import os
import time

import h5py
import numpy as np

from .._errors import DMFTInputError
from ._common import json_default

# a temp file of a dead writer is removed by the next successful save to the same path once it
# is this old (a writer on another host sharing the folder keeps touching its file)
STALE_TEMP_S = 3600.0

# room for the ".tmp-<pid>" of the atomic write (pids below 10**10) and a ".partial" stem
_TMP_SUFFIX_LEN = len(".tmp-") + 10
_PARTIAL_LEN = len(".partial")


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


def partial_path(path) -> str:
    """``run.h5`` → ``run.partial.h5``: where a diverged run's partial results go."""
    path = os.fspath(path)
    stem, ext = os.path.splitext(path)
    return f"{stem}.partial{ext or '.h5'}"


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
    _check_name(path, name, suffixes, partial)
    folder = os.path.dirname(os.path.abspath(path))
    ancestor = folder
    while not os.path.exists(ancestor):
        ancestor = os.path.dirname(ancestor)
    if not os.path.isdir(ancestor):
        raise DMFTInputError(
            f"`{name}`: the parent {ancestor!r} of {path!r} is a file, not a directory"
        )
    _check_name_length(path, name, ancestor, partial)
    _check_writable(path, name, folder, ancestor)
    if need_bytes:
        free = _free_bytes(ancestor)
        if free is not None and free < need_bytes:
            raise DMFTInputError(
                f"`{name}`: the file needs about {need_bytes / 1e6:.1f} MB but only "
                f"{free / 1e6:.1f} MB are free in {ancestor!r}; free some space or choose "
                "another --out"
            )
    return path


def _check_name(path: str, name: str, suffixes, partial: bool) -> None:
    """A file name (with a listed suffix) that is not an existing directory, nor is its
    partial-results name."""
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


def _check_name_length(path: str, name: str, ancestor: str, partial: bool) -> None:
    """Every path component, and the file name with the temporary/partial suffixes, fits the
    file system's per-name limit."""
    base = os.path.basename(path)
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


def _check_writable(path: str, name: str, folder: str, ancestor: str) -> None:
    """The nearest existing parent is writable, and an existing folder accepts a probe file
    (creating one is the check that cannot disagree with the write that follows)."""
    if not os.access(ancestor, os.W_OK | os.X_OK):
        raise DMFTInputError(f"`{name}`: the directory {ancestor!r} is not writable ({path!r})")
    if ancestor == folder:
        base = os.path.basename(path)
        probe = os.path.join(folder, f".{base[:50]}.probe-{os.getpid()}")
        try:
            with open(probe, "wb"):
                pass
            os.remove(probe)
        except OSError as exc:
            raise DMFTInputError(
                f"`{name}`: cannot create files in {folder!r}: {exc.strerror or exc} ({path!r})"
            ) from None


def _free_bytes(folder: str):
    try:
        st = os.statvfs(folder)
        return st.f_bavail * st.f_frsize
    except (OSError, AttributeError):
        return None


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
    f.attrs["config_json"] = json.dumps(config, sort_keys=True, default=json_default)
    f.attrs["creator"] = "dmft"
    f.attrs["creator_version"] = __version__
    f.attrs["jax_version"] = _package_version("jax")
    f.attrs["created"] = datetime.datetime.now(datetime.UTC).isoformat(timespec="seconds")
    f.attrs["seed"] = int(seed)
    f.attrs["key_scheme"] = key_scheme
    f.attrs["status"] = status
    if command_line is not None:
        f.attrs["command_line"] = command_line
