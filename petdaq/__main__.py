"""``python -m petdaq`` is ``petdaq``."""

import sys

from petdaq.cli import main

sys.exit(main())
