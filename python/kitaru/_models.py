"""The path `kitaru._models` of earlier releases: the module is now `kitaru._llm.models`."""

import sys

from ._llm import models

sys.modules[__name__] = models
