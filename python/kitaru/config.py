"""Kitaru 0.4's `kitaru.config` module: model aliases and execution configuration under
their 0.4 import path (the same functions as `kitaru.*`)."""

from __future__ import annotations

from ._llm.models import list_model_aliases, register_model_alias, resolve_model_selection
from .stacks import ImageSettings, KitaruConfig, configure

__all__ = [
    "ImageSettings",
    "KitaruConfig",
    "configure",
    "list_model_aliases",
    "register_model_alias",
    "resolve_model_selection",
]
