"""JAX's persistent compilation cache for dmft's entry points.

The command line (``dmft ...``) and the ``solvers/`` and ``validation/`` scripts call
:func:`enable_compile_cache` first thing, so a second run of the same structure loads its
compiled programs from disk instead of compiling them again. The library itself never changes
JAX's configuration on import; Python users opt in with ``dmft.enable_compile_cache()``.

Location: ``$DMFT_COMPILE_CACHE`` if set, else ``$XDG_CACHE_HOME/dmft/jax`` (default
``~/.cache/dmft/jax``). ``DMFT_NO_COMPILE_CACHE=1`` turns it off.

A damaged entry (a crash while writing, a full disk, a copied folder) makes JAX warn on every
read and never rewrite it. :func:`enable_compile_cache` therefore removes the entries that no
JAX decompressor can read (checked on their first bytes: a zstd or zlib header) with one
warning naming the folder, so they are compiled and written again; an entry damaged further in
still costs one JAX warning per program, which the command line collapses into one line
(:data:`JAX_CACHE_READ_ERROR`, :func:`cache_warning_once`).
"""

from __future__ import annotations

import os
import warnings

# the start of JAX's warning for an entry it cannot read (jax._src.compiler)
JAX_CACHE_READ_ERROR = "Error reading persistent compilation cache entry"
_ZSTD_MAGIC = b"\x28\xb5\x2f\xfd"
_REPORTED: set[str] = set()  # folders already reported in this process


def _readable_header(head: bytes) -> bool:
    """Whether ``head`` (an entry's first bytes) starts a zstd frame or a zlib stream."""
    if head.startswith(_ZSTD_MAGIC):
        return True
    return (len(head) >= 2 and head[0] & 0x0F == 8 and head[0] >> 4 <= 7
            and (head[0] * 256 + head[1]) % 31 == 0)


def remove_unreadable_entries(path: str) -> list[str]:
    """Remove the cache entries of ``path`` (``*-cache`` files) that cannot be decompressed;
    return their names. Only the first bytes of each entry are read."""
    removed = []
    try:
        names = os.listdir(path)
    except OSError:
        return removed
    for name in names:
        if not name.endswith("-cache"):
            continue
        full = os.path.join(path, name)
        try:
            with open(full, "rb") as f:
                head = f.read(4)
            if not _readable_header(head):
                os.remove(full)
                atime = full[: -len("-cache")] + "-atime"  # JAX's LRU timestamp, if any
                if os.path.exists(atime):
                    os.remove(atime)
                removed.append(name)
        except OSError:
            continue  # a folder, or a file another process is removing: not ours to judge
    return removed


def cache_warning_once(path: str | None = None) -> str | None:
    """The one-line warning for JAX's "cannot read a cache entry" warnings, the first time in
    this process for ``path`` (default :func:`cache_dir`); None afterwards."""
    path = path or cache_dir()
    if path in _REPORTED:
        return None
    _REPORTED.add(path)
    return (f"some entries of the compilation cache {path} could not be read; they were "
            "ignored and the programs compiled again (delete that folder if this repeats)")


def cache_dir() -> str:
    if os.environ.get("DMFT_COMPILE_CACHE"):
        return os.environ["DMFT_COMPILE_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dmft", "jax")


def enable_compile_cache(path: str | None = None) -> str | None:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`cache_dir`).

    Every compiled program is cached (no minimum compile time or size). Entries that cannot
    be decompressed are removed first, with one RuntimeWarning naming the folder. Returns the
    folder, or None when ``DMFT_NO_COMPILE_CACHE=1`` or the folder cannot be created.
    """
    if os.environ.get("DMFT_NO_COMPILE_CACHE", "") not in ("", "0"):
        return None
    import jax

    path = path or cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    removed = remove_unreadable_entries(path)
    if removed and path not in _REPORTED:
        _REPORTED.add(path)
        warnings.warn(
            f"the compilation cache {path} had {len(removed)} unreadable entr"
            f"{'y' if len(removed) == 1 else 'ies'}; removed, the programs will be compiled "
            "and cached again", RuntimeWarning, stacklevel=2)
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
