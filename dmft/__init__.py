"""dmft: exact high-dimensional dynamics of multi-pass gradient descent on two-layer networks.

Solve the dynamical mean-field theory (DMFT) of full-batch GD that reuses its batch, and check it
against a direct large-d simulation of the same training. See README.md and docs/.

Importing ``dmft`` is cheap: the public names (``dmft.solve``, ``dmft.simulate``, ...) and the
submodules (``dmft.io``, ``dmft.plot``, ...) are imported on first use (PEP 562 module
``__getattr__``), so ``import dmft.io`` reads files with numpy and h5py alone, without JAX.
"""

from __future__ import annotations

import importlib
import sys
import types

from ._checks import DivergenceError as DivergenceError
from ._checks import DMFTInputError as DMFTInputError


def _read_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dmft")
    except PackageNotFoundError:  # run from a checkout, not installed
        return "0+unknown"


__version__ = _read_version()

# public name -> the submodule that defines it (imported on first access)
_LAZY = {
    "solve_flow": "flow",
    "test_error": "observables",
    "test_loss": "observables",
    "LOSSES": "problem",
    "Loss": "problem",
    "solve_online": "online",
    "ACTIVATIONS": "problem",
    "TARGETS": "problem",
    "Problem": "problem",
    "Target": "problem",
    "custom_target": "problem",
    "make_problem": "problem",
    "Estimate": "result",
    "Trajectory": "result",
    "simulate": "simulate",
    "solve": "solver",
    "sweep": "_sweep",
    "SweepResult": "_sweep",
    "enable_compile_cache": "_cache",
    "simulate_features": "features",
    "rf_test_error": "rf_theory",
}
_SUBMODULES = ("cli", "compare", "exact", "flow", "io", "observables", "online", "plot",
               "problem", "result", "runner", "simulate", "solver", "sweep_io",
               "features", "features_plot", "rf_theory")

__all__ = sorted(["DivergenceError", "DMFTInputError", "set_precision", "__version__",
                  *_LAZY])


def __getattr__(name: str):
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBMODULES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dmft' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBMODULES))


class _Package(types.ModuleType):
    """``dmft.simulate`` is the function, also after the submodule ``dmft.simulate`` is imported
    (the import system then sets the package attribute to the module; it is ignored here, the
    module stays in ``sys.modules``)."""

    def __setattr__(self, name, value):
        if name in _LAZY and isinstance(value, types.ModuleType):
            return
        super().__setattr__(name, value)


sys.modules[__name__].__class__ = _Package


def set_precision(precision: str) -> None:
    """``"double"`` turns JAX x64 on, ``"single"`` turns it off. Call before creating arrays."""
    import jax

    if precision not in ("double", "single"):
        raise DMFTInputError(f"`precision` must be 'double' or 'single'; got {precision!r}")
    jax.config.update("jax_enable_x64", precision == "double")
