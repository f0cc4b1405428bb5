"""What a run reports: the table of observables and kernels, and the exact test error."""

from ._table import DERIVED as DERIVED
from ._table import KERNEL_DIMS as KERNEL_DIMS
from ._table import KERNELS as KERNELS
from ._table import OBSERVABLES as OBSERVABLES
from ._table import OPTIONAL as OPTIONAL
from ._table import Entry as Entry
from ._test_error import test_error as test_error
from ._test_error import test_error_map as test_error_map
from ._test_error import test_loss as test_loss
