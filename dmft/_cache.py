"""JAX's persistent compilation cache for dmft's entry points.

The command line (``dmft ...``) and the ``solvers/`` and ``validation/`` scripts call
:func:`enable_compile_cache` first thing, so a second run of the same structure loads its
compiled programs from disk instead of compiling them again. The library itself never changes
JAX's configuration on import; Python users opt in with ``dmft.enable_compile_cache()``.

Location: ``$DMFT_COMPILE_CACHE`` if set, else ``$XDG_CACHE_HOME/dmft/jax`` (default
``~/.cache/dmft/jax``). ``DMFT_NO_COMPILE_CACHE=1`` turns it off.
"""

from __future__ import annotations

import os


def cache_dir() -> str:
    if os.environ.get("DMFT_COMPILE_CACHE"):
        return os.environ["DMFT_COMPILE_CACHE"]
    base = os.environ.get("XDG_CACHE_HOME") or os.path.join(os.path.expanduser("~"), ".cache")
    return os.path.join(base, "dmft", "jax")


def enable_compile_cache(path: str | None = None) -> str | None:
    """Point JAX's persistent compilation cache at ``path`` (default :func:`cache_dir`).

    Every compiled program is cached (no minimum compile time or size). Returns the folder, or
    None when ``DMFT_NO_COMPILE_CACHE=1`` or the folder cannot be created.
    """
    if os.environ.get("DMFT_NO_COMPILE_CACHE", "") not in ("", "0"):
        return None
    import jax

    path = path or cache_dir()
    try:
        os.makedirs(path, exist_ok=True)
    except OSError:
        return None
    jax.config.update("jax_compilation_cache_dir", path)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
    return path
