"""The chat-template families now live on the runtime side (:mod:`runtime.prompt.families`),
where ``create`` on the air-gapped target uses them too; re-exported here for the bundler."""
from __future__ import annotations

from runtime.prompt.families import FAMILIES, TemplateChoice, choose_template

__all__ = ["FAMILIES", "TemplateChoice", "choose_template"]
