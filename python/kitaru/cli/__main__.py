"""`python -m kitaru.cli`."""

import sys

from . import main

sys.exit(main())
