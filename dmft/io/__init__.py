"""Result files: versioned HDF5 for trajectories, sweeps and feature spectra (docs/FORMAT.md).

``import dmft.io`` needs only numpy and h5py: files can be read and described without JAX.
``python -m dmft.io inspect FILE.h5`` prints a file's version, kind and configuration.

Modules: ``_common`` (format names and versions, the file check and configuration readers),
``_guard`` (the guarded reading layer every reader goes through: links, sizes, dtypes, JSON
depth and ``format_version`` checked, failures as one DMFTInputError), ``_atomic``
(output-path check, atomic write, root attributes), ``_trajectory``, ``_sweep``, ``_optimize``
and ``_features`` (one file type each), ``_describe`` (``describe`` and the ``inspect`` entry
point).
"""

from ._atomic import STALE_TEMP_S as STALE_TEMP_S
from ._atomic import check_output_path as check_output_path
from ._atomic import partial_path as partial_path
from ._atomic import write_atomic as write_atomic
from ._atomic import write_root_attrs as write_root_attrs
from ._common import FEATURES_FORMAT as FEATURES_FORMAT
from ._common import FEATURES_VERSION as FEATURES_VERSION
from ._common import FORMAT as FORMAT
from ._common import FORMAT_VERSION as FORMAT_VERSION
from ._common import check_file as check_file
from ._common import read_config as read_config
from ._describe import describe as describe
from ._describe import main as main
from ._features import load_features as load_features
from ._features import save_features as save_features
from ._optimize import load_optimize as load_optimize
from ._optimize import save_optimize as save_optimize
from ._sweep import load_sweep as load_sweep
from ._sweep import save_sweep as save_sweep
from ._trajectory import estimate_file_bytes as estimate_file_bytes
from ._trajectory import load as load
from ._trajectory import save as save
