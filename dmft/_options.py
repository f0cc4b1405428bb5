"""How a theory run executes, as opposed to what it computes: one options object for
:func:`dmft.solve`, :func:`dmft.sweep`, :func:`dmft.solve_flow` and :func:`dmft.solve_online`.

Each of these functions takes the options as keywords (``dtype=``, ``chunk_size=``, ...) or as one
:class:`Options` (``options=``), which can be built once and shared::

    opts = dmft.Options(dtype="float32", devices=2, progress=False)
    dmft.solve(problem, 400_000, options=opts)
    dmft.sweep(problem, {"lr": [0.1, 0.2]}, 400_000, options=opts)
"""

from __future__ import annotations

import dataclasses
import sys

from ._errors import DMFTInputError
from ._validate import check_dtype, check_int, check_x64, show


@dataclasses.dataclass(frozen=True)
class Options:
    """Execution options of a theory run, validated at construction.

    Attributes:
        dtype: ``"float64"`` (needs JAX x64) or ``"float32"`` (per-sample arrays in float32;
            kernels stay float64 when x64 is on).
        chunk_size: samples per chunk inside a replica (``None``: a whole replica at once);
            bounds the per-step temporaries, not the histories; results do not depend on it
            beyond rounding.
        devices: ``None`` (every device of the default backend), a count, or a list of devices.
        progress: a progress bar over steps; ``None`` shows it only on a terminal.
        throw: ``True`` raises :class:`~dmft.DivergenceError` when a run diverges (its
            ``.partial`` holds what was computed); ``False`` returns that partial result, whose
            ``status`` is ``"diverged"``.
    """

    dtype: str = "float64"
    chunk_size: int | None = None
    devices: object = None
    progress: bool | None = None
    throw: bool = True

    def __post_init__(self):
        object.__setattr__(self, "dtype", check_dtype(self.dtype))
        check_x64(self.dtype)
        if self.chunk_size is not None:
            object.__setattr__(self, "chunk_size", check_int("chunk_size", self.chunk_size,
                                                             low=1))
        if self.progress is not None and not isinstance(self.progress, bool):
            raise DMFTInputError(
                f"`progress` must be True, False or None; got progress={show(self.progress)}")
        if not isinstance(self.throw, bool):
            raise DMFTInputError(f"`throw` must be True or False; got throw={show(self.throw)}")

    @property
    def show_progress(self) -> bool:
        return sys.stderr.isatty() if self.progress is None else self.progress


DEFAULT = Options.__dataclass_fields__


def resolve_options(options: Options | None, **given) -> Options:
    """The options of a call: ``options`` if given (then every keyword in ``given`` must be at
    its default), else an :class:`Options` built from the keywords."""
    if options is None:
        return Options(**given)
    if not isinstance(options, Options):
        raise DMFTInputError(
            f"`options` must be a dmft.Options; got {type(options).__name__}")
    clash = [name for name, value in given.items() if value != DEFAULT[name].default]
    if clash:
        raise DMFTInputError(
            f"pass {', '.join(f'`{n}`' for n in clash)} either as keyword or in `options`, not "
            "both")
    return options
