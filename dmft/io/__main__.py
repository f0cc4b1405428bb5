"""``python -m dmft.io inspect FILE.h5``: describe a result file (numpy and h5py only)."""

import sys

from ._describe import main

sys.exit(main())
