"""What a run reports: the table of observables and kernels, and the exact test error.

The table (``OBSERVABLES``, ``OPTIONAL``, ``KERNELS``, ``DERIVED``) needs only numpy, so that
file readers can use it without JAX; the test-error functions are imported on first use.
"""

from ._table import DERIVED as DERIVED
from ._table import KERNEL_DIMS as KERNEL_DIMS
from ._table import KERNELS as KERNELS
from ._table import OBSERVABLES as OBSERVABLES
from ._table import OPTIONAL as OPTIONAL
from ._table import Entry as Entry

_LAZY = ("test_error", "test_error_map", "test_loss")


def __getattr__(name: str):
    if name in _LAZY:
        from . import _test_error

        return getattr(_test_error, name)
    raise AttributeError(f"module 'dmft.observables' has no attribute {name!r}")
