"""``python -m dmft.cli``: the ``dmft`` command."""

import sys

from . import main

sys.exit(main())
