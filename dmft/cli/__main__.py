"""``python -m dmft.cli``: the ``dmft`` command."""

import sys

from ._main import main

sys.exit(main())
