"""The path `kitaru._providers` of earlier releases: the module is now `kitaru._llm.providers`."""

import sys

from ._llm import providers

sys.modules[__name__] = providers
