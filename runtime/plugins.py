"""Entry points: how the online side (bundler/) plugs into runtime/ without runtime importing it.

``llmcrate.commands`` adds CLI groups (``bundle``, ``deploy``); ``llmcrate.sources`` adds model
pullers (Hugging Face). See pyproject.toml.
"""
from __future__ import annotations

import importlib.metadata
import sys


def entry_points(group: str) -> list[importlib.metadata.EntryPoint]:
    """The installed entry points of ``group`` (looked up on each call: what is installed now)."""
    if sys.version_info >= (3, 10):
        return list(importlib.metadata.entry_points(group=group))  # novermin
    return list(importlib.metadata.entry_points().get(group, ()))  # Python 3.9: a dict of groups
