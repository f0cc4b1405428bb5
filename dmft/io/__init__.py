"""Result files: versioned HDF5 for trajectories, sweeps and feature spectra (docs/FORMAT.md).

``import dmft.io`` needs only numpy and h5py: files can be read and described without JAX.
``python -m dmft.io inspect FILE.h5`` prints a file's version, kind and configuration.
"""

from ._format import FEATURES_FORMAT as FEATURES_FORMAT
from ._format import FEATURES_VERSION as FEATURES_VERSION
from ._format import FORMAT as FORMAT
from ._format import FORMAT_VERSION as FORMAT_VERSION
from ._format import STALE_TEMP_S as STALE_TEMP_S
from ._format import check_file as check_file
from ._format import check_output_path as check_output_path
from ._format import describe as describe
from ._format import estimate_file_bytes as estimate_file_bytes
from ._format import load as load
from ._format import load_features as load_features
from ._format import main as main
from ._format import partial_path as partial_path
from ._format import read_config as read_config
from ._format import save as save
from ._format import save_features as save_features
from ._format import write_atomic as write_atomic
from ._format import write_root_attrs as write_root_attrs
from ._sweep import load_sweep as load_sweep
from ._sweep import save_sweep as save_sweep
