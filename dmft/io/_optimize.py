"""Optimisation files: one HDF5 file per :func:`dmft.optimize` (``dmft-trajectories``, kind
``optimize``; docs/FORMAT.md, "Optimisation files").

Root attributes as for every dmft file, with ``config_json`` holding the optimised ``problem``,
the ``initial_problem``, the ``objective``, ``wrt`` and the settings; ``best_iteration``. The
group ``history`` holds ``objective`` and ``grad_norm`` (iteration,) and one dataset per optimised
field, (iteration,) + the field's shape in Problem (e.g. (iteration, step) for ``lr``), with the
root dimension scale ``iteration``. Reading needs numpy and h5py only.
"""

from __future__ import annotations

import os

import numpy as np

from .._errors import DMFTInputError
from ._atomic import write_atomic, write_root_attrs
from ._common import (
    FORMAT,
    FORMAT_VERSION,
    attr_str,
    check_file,
    expect_kind,
    read_config,
    rebuild_problem,
)
from ._guard import open_file

_DIMS = {"lr": ("step",), "lr_a": ("step",), "momentum": ("step",), "momentum_a": ("step",),
         "second_layer": ("unit",),
         "m0": ("unit", "target_dir"), "qperp0": ("unit", "unit2")}


def save_optimize(result, path, *, command_line: str | None = None) -> str:
    """Write a :class:`dmft.OptimizeResult` to ``path`` atomically; returns the path."""
    from .._rng import KEY_SCHEME

    config = {"kind": "optimize", "problem": result.problem.to_dict(),
              "initial_problem": result.initial_problem.to_dict(),
              "objective": result.objective, "minimised": result.minimised,
              "wrt": list(result.wrt), "settings": dict(result.settings)}
    hist = result.history

    def fill(f):
        write_root_attrs(f, fmt=FORMAT, version=FORMAT_VERSION, kind="optimize", config=config,
                         seed=result.settings.get("seed", -1), key_scheme=KEY_SCHEME,
                         status=result.status, command_line=command_line,
                         best_iteration=int(result.best_iteration))
        n = len(hist["objective"])
        it = f.create_dataset("iteration", data=np.arange(n, dtype=np.int64))
        it.make_scale("iteration")
        g = f.create_group("history")
        g.attrs["meaning"] = ("per optimiser iteration: the minimised objective, the gradient "
                              "norm of the unconstrained parameters, and the optimised fields")
        for name, arr in hist.items():
            ds = g.create_dataset(name, data=np.asarray(arr, dtype=np.float64))
            ds.dims[0].attach_scale(it)
            labels = ("iteration",) + _DIMS.get(name, ("step",) if ds.ndim == 2 else ())
            for i, lab in enumerate(labels[:ds.ndim]):
                ds.dims[i].label = lab

    return write_atomic(path, fill)


def load_optimize(path):
    """Read an optimisation file back into a :class:`dmft.OptimizeResult`."""
    from .._optimize import OptimizeResult

    attrs = check_file(path)
    expect_kind(path, attrs, "optimize", "an optimisation file")
    config = read_config(path, attrs)
    try:
        problem = rebuild_problem(config["problem"])
        initial = rebuild_problem(config["initial_problem"])
        wrt = tuple(str(n) for n in config["wrt"])
        objective, minimised = str(config["objective"]), str(config["minimised"])
    except (LookupError, TypeError, ValueError) as exc:
        raise DMFTInputError(f"{os.fspath(path)}: attribute config_json does not describe an "
                             f"optimisation ({type(exc).__name__}: {exc})") from None
    with open_file(path) as r:
        history = {name: r.array(f"history/{name}")
                   for name in ("objective", "grad_norm", *wrt)}
    return OptimizeResult(problem=problem, initial_problem=initial, objective=objective,
                          minimised=minimised, wrt=wrt, history=history,
                          best_iteration=int(attrs.get("best_iteration", 0)),
                          status=attr_str(attrs.get("status", "ok")),
                          settings=config.get("settings", {}))
