"""Real HTTP servers on 127.0.0.1 that stand in for online services in tests and benchmarks.

- :class:`tests.fakes.registry.FakeRegistry` speaks the Ollama (docker v2) registry protocol.
- :class:`tests.fakes.hf.FakeHub` speaks the Hugging Face Hub routes ``huggingface_hub`` uses.
"""
from __future__ import annotations

from fakes.hf import FakeHub
from fakes.registry import FakeModel, FakeRegistry, RequestRecord

__all__ = ["FakeHub", "FakeModel", "FakeRegistry", "RequestRecord"]
