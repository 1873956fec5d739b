"""llmcrate bundler: the online host's side (Hugging Face pulls, bundle build/inspect/verify)."""
from __future__ import annotations
