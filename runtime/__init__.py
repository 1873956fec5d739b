"""llmcrate runtime: everything the air-gapped host runs.

Never imports :mod:`bundler` nor online-only dependencies (huggingface_hub).
"""
from __future__ import annotations

__version__ = "0.1.0"

#: The Ollama API version llmcrate implements, reported by ``/api/version`` (clients gate
#: features on it); llmcrate's own version is ``llmcrate --version`` and the
#: ``X-Llmcrate-Version`` header of every answer.
OLLAMA_API_VERSION = "0.32.15"
