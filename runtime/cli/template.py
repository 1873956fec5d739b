"""``llmcrate template render``: print the exact prompt a model would be fed."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import click

from runtime.models.gguf_info import GGUF_MAGIC, read_gguf_info
from runtime.prompt import chat_prompt, generate_prompt


@click.group()
def template() -> None:
    """Inspect prompt templates."""


def _load_json_array(path: str | None, what: str) -> list[Any] | None:
    if path is None:
        return None
    try:
        data = json.loads(Path(path).read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError) as e:
        raise click.BadParameter(f"{path}: {e}", param_hint=f"--{what}") from None
    if not isinstance(data, list):
        raise click.BadParameter(f"{path}: expected a JSON array of {what}",
                                 param_hint=f"--{what}")
    return data


def _load_template(path: Path) -> dict[str, Any]:
    """A Go template file, a GGUF whose tokenizer.chat_template is used, or a .jinja file."""
    with open(path, "rb") as f:
        head = f.read(4)
    if head == GGUF_MAGIC:
        info = read_gguf_info(path)
        if info.chat_template is None:
            raise click.BadParameter(f"{path}: the GGUF has no tokenizer.chat_template",
                                     param_hint="--template")
        return {"template": None, "jinja_template": info.chat_template,
                "bos_token": info.token("bos") or "", "eos_token": info.token("eos") or ""}
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError as e:
        raise click.BadParameter(f"{path}: not UTF-8 text ({e})", param_hint="--template") from None
    if path.suffix in (".jinja", ".j2"):
        return {"template": None, "jinja_template": text, "bos_token": "", "eos_token": ""}
    return {"template": text, "jinja_template": None, "bos_token": "", "eos_token": ""}


@template.command("render")
@click.option("--template", "template_path", required=True,
              type=click.Path(exists=True, dir_okay=False, path_type=Path),
              help="Go template file; a GGUF file (its Jinja chat template is used) or a "
                   ".jinja/.j2 file renders as Jinja.")
@click.option("--messages", "messages_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON array of /api/chat messages.")
@click.option("--tools", "tools_path", type=click.Path(exists=True, dir_okay=False),
              help="JSON array of /api/chat tools.")
@click.option("--system", help="System prompt (the Modelfile SYSTEM).")
@click.option("--prompt", help="Render as /api/generate with this prompt.")
@click.option("--suffix", help="Fill-in-the-middle suffix (with --prompt).")
@click.option("--response",
              help="Render as if the model had answered this (adds an assistant turn).")
def render(template_path: Path, messages_path: str | None, tools_path: str | None,
           system: str | None, prompt: str | None, suffix: str | None,
           response: str | None) -> None:
    """Print the prompt a model would be fed: exact bytes, no added newline."""
    if (messages_path is None) == (prompt is None):
        raise click.UsageError("give exactly one of --messages or --prompt")
    if suffix is not None and prompt is None:
        raise click.UsageError("--suffix needs --prompt")
    if suffix is not None and response is not None:
        raise click.UsageError("--suffix and --response do not go together")
    tmpl = _load_template(template_path)
    messages = _load_json_array(messages_path, "messages")
    tools = _load_json_array(tools_path, "tools")
    if prompt is not None and response is None:
        out = generate_prompt(prompt=prompt, system=system, suffix=suffix, **tmpl)
    else:
        if messages is None:    # --prompt with --response: one complete turn
            messages = [{"role": "user", "content": prompt}]
            if system:
                messages.insert(0, {"role": "system", "content": system})
        if response is not None:
            messages = [*messages, {"role": "assistant", "content": response}]
        out = chat_prompt(messages=messages, tools=tools, system=system, **tmpl)
    click.echo(out.encode("utf-8"), nl=False)   # bytes: written as they are
