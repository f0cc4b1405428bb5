"""dmft: exact high-dimensional dynamics of multi-pass gradient descent on two-layer networks.

Solve the dynamical mean-field theory (DMFT) of full-batch GD that reuses its batch, and check it
against a direct large-d simulation of the same training. See README.md and docs/.

Importing ``dmft`` is cheap: the public names (``dmft.solve``, ``dmft.simulate``, ...) and the
subpackages (``dmft.io``, ``dmft.plot``, ...) are imported on first use (PEP 562 module
``__getattr__``), so ``import dmft.io`` reads files with numpy and h5py alone, without JAX.
"""

from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys
import warnings

from ._errors import DivergenceError as DivergenceError
from ._errors import DMFTInputError as DMFTInputError


def _read_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("dmft")
    except PackageNotFoundError:  # run from a checkout, not installed
        return "0+unknown"


# public name -> the module that defines it (imported on first access)
_LAZY = {
    "ACTIVATIONS": "model",
    "LOSSES": "model",
    "TARGETS": "model",
    "Loss": "model",
    "Problem": "model",
    "Target": "model",
    "custom_target": "model",
    "make_problem": "model",
    "Estimate": "_result",
    "Trajectory": "_result",
    "Options": "_options",
    "test_error": "observables",
    "test_loss": "observables",
    "solve": "solver",
    "solve_fn": "solver",
    "numbers": "solver",
    "memory_estimate": "solver",
    "optimize": "_optimize",
    "OptimizeResult": "_optimize",
    "simulate": "simulator",
    "sweep": "_sweep",
    "SweepResult": "_sweep",
    "solve_flow": "baselines",
    "solve_online": "baselines",
    "simulate_features": "features",
    "rf_test_error": "features",
    "features_theory": "features",
    "FeaturesConfig": "features",
    "FeaturesTheory": "features",
    "enable_compile_cache": "_cache",
}
_SUBPACKAGES = ("baselines", "cli", "compare", "features", "io", "model", "observables", "plot",
                "simulator", "solver")

# module paths of earlier releases -> where their names live now (imported with a
# DeprecationWarning)
_MOVED = {
    "dmft.problem": "dmft.model",
    "dmft.result": "dmft._result",
    "dmft.flow": "dmft.baselines",
    "dmft.online": "dmft.baselines",
    "dmft.exact": "dmft.baselines",
    "dmft.rf_theory": "dmft.features",
    "dmft.features_plot": "dmft.features",
    "dmft.sweep_io": "dmft.io",
    "dmft.runner": "dmft.cli",
}

__all__ = sorted(["DivergenceError", "DMFTInputError", "set_precision", "__version__", *_LAZY])


def __getattr__(name: str):
    if name == "__version__":  # read on first use: importing dmft stays cheap
        globals()["__version__"] = _read_version()
        return globals()["__version__"]
    if name in _LAZY:
        value = getattr(importlib.import_module(f".{_LAZY[name]}", __name__), name)
        globals()[name] = value
        return value
    if name in _SUBPACKAGES:
        return importlib.import_module(f".{name}", __name__)
    raise AttributeError(f"module 'dmft' has no attribute {name!r}")


def __dir__():
    return sorted(set(globals()) | set(_LAZY) | set(_SUBPACKAGES))


class _MovedFinder(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """``import dmft.problem`` (and the other paths of ``_MOVED``) gives the module that holds
    those names now, with a DeprecationWarning."""

    def find_spec(self, fullname, path=None, target=None):
        if fullname in _MOVED:
            return importlib.util.spec_from_loader(fullname, self)
        return None

    def create_module(self, spec):
        new = _MOVED[spec.name]
        warnings.warn(f"`{spec.name}` is deprecated; import from `{new}` (or `dmft`) instead",
                      DeprecationWarning, stacklevel=3)
        return importlib.import_module(new)

    def exec_module(self, module):
        pass


if not any(isinstance(f, _MovedFinder) for f in sys.meta_path):
    sys.meta_path.append(_MovedFinder())


def set_precision(precision: str) -> None:
    """``"double"`` turns JAX x64 on, ``"single"`` turns it off. Call before creating arrays."""
    import jax

    if precision not in ("double", "single"):
        raise DMFTInputError(f"`precision` must be 'double' or 'single'; got {precision!r}")
    jax.config.update("jax_enable_x64", precision == "double")
