"""llmcrate runtime: everything the air-gapped host runs.

Never imports :mod:`bundler` nor online-only dependencies (huggingface_hub).
"""
from __future__ import annotations

__version__ = "0.1.0"
