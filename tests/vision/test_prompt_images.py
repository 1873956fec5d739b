"""Where images land in rendered prompts (``runtime.api.prompting``) and how the tags map
back to the image list a runner gets."""
from __future__ import annotations

from pathlib import Path

from runtime.api.prompting import (
    build_chat_prompt,
    build_generate_prompt,
    chat_images,
    generate_images,
)
from runtime.models.model import ModelInfo
from runtime.models.names import parse_name
from runtime.serve.vision import split_image_tags

T = "{{ range .Messages }}[{{ .Role }}:{{ .Content }}]{{ end }}"


def info(messages: list[dict] | None = None) -> ModelInfo:
    return ModelInfo(name=parse_name("m"), manifest=None, model_path=Path("/nonexistent"),  # type: ignore[arg-type]
                     template=T, messages=messages or [])


def chars(s: str) -> list[int]:
    return list(range(len(s)))


def test_chat_tags_index_model_messages_then_request():
    mi = info([{"role": "user", "content": "saved", "images": ["U0FWRUQ="]}])
    msgs = [{"role": "user", "content": "compare [img] with this", "images": ["QQ==", "Qg=="]}]
    prompt = build_chat_prompt(mi, msgs, tools=None, tokenize=chars, num_ctx=10_000)
    assert prompt == "[user:[img-0]saved\n\n[img-2]compare [img-1] with this]"
    images = chat_images(mi, msgs)
    assert images == ["U0FWRUQ=", "QQ==", "Qg=="]
    parts = split_image_tags(prompt, [x.encode() for x in images])
    assert parts[1] == b"U0FWRUQ=" and parts[3] == b"Qg==" and parts[5] == b"QQ=="


def test_generate_images_are_turns_before_the_prompt():
    mi = info([{"role": "user", "content": "saved", "images": ["U0FWRUQ="]}])
    prompt = build_generate_prompt(mi, prompt="what?", system="", suffix="", template="",
                                   has_context=False, tokenize=chars, num_ctx=10_000,
                                   images=["QQ==", "Qg=="])
    assert prompt == "[user:[img-0]saved\n\n[img-1]\n\n[img-2]\n\nwhat?]"
    assert generate_images(mi, ["QQ==", "Qg=="], has_context=False) == ["U0FWRUQ=", "QQ==", "Qg=="]
    # with a context the model's messages are not rendered: the request's images start at 0
    prompt = build_generate_prompt(mi, prompt="what?", system="", suffix="", template="",
                                   has_context=True, tokenize=chars, num_ctx=10_000,
                                   images=["QQ=="])
    assert prompt == "[user:[img-0]\n\nwhat?]"
    assert generate_images(mi, ["QQ=="], has_context=True) == ["QQ=="]


def test_generate_with_request_template_keeps_images():
    prompt = build_generate_prompt(info(), prompt="what?", system="", suffix="",
                                   template="<{{ .Prompt }}>", has_context=False, tokenize=chars,
                                   num_ctx=10_000, images=["QQ==", "Qg=="])
    assert prompt == "<[img-0][img-1]what?>"
    assert generate_images(info(), ["QQ==", "Qg=="], has_context=False,
                           template="<{{ .Prompt }}>") == ["QQ==", "Qg=="]
