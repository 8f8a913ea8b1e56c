"""``python -m daq`` is ``petdaq``."""

import sys

from daq.cli import main

sys.exit(main())
