"""``python -m compass.cli``: the ``compass`` command."""

import sys

from . import main

sys.exit(main())
