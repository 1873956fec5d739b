"""A real instruct model (SmolLM2-135M-Instruct, ChatML ``chat_template`` with a default system
prompt) through the live server: its template detected, shown and round-tripped through
``show --modelfile`` -> ``create``, and real generations (greedy equal to llama-cpp-python,
stopping on ``<|im_end|>``, JSON-schema ``format``)."""
from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ollama
import pytest
from click.testing import CliRunner

from runtime.api.prompting import build_chat_prompt
from runtime.models.create import create_model
from runtime.models.gguf_info import read_gguf_info
from runtime.models.model import load_model_info
from runtime.models.modelfile import parse_modelfile
from runtime.models.store import MEDIA_PARAMS, MEDIA_TEMPLATE, Store
from runtime.prompt import render_jinja
from runtime.prompt.families import choose_template

SMOL = "smol"
GREEDY = {"temperature": 0, "seed": 0, "repeat_penalty": 1.1, "num_ctx": 2048}
CONVERSATIONS: list[list[dict[str, Any]]] = [
    [{"role": "user", "content": "What is the capital of France?"}],
    [{"role": "system", "content": "You answer in one word."},
     {"role": "user", "content": "Name a colour."},
     {"role": "assistant", "content": "Blue."},
     {"role": "user", "content": "Another one?"}],
]


@pytest.fixture(scope="module")
def smol_store(tmp_path_factory: pytest.TempPathFactory, smollm2_gguf: Path) -> Store:
    """A store holding ``smol``, created as a user would: ``FROM ./model.gguf``, no TEMPLATE."""
    root = tmp_path_factory.mktemp("smol")
    (root / "Modelfile").write_text(f"FROM {smollm2_gguf}\n")
    store = Store(root / "models")
    create_model(store, SMOL, parse_modelfile((root / "Modelfile").read_text()), base_dir=root)
    return store


@pytest.fixture
def smol_url(live_server, smol_store: Store) -> str:
    return live_server(store=smol_store)


def _prompt(store: Store, name: str, messages: list[dict[str, Any]]) -> str:
    info = load_model_info(store, name)
    return build_chat_prompt(info, [dict(m) for m in messages], tools=None,
                             tokenize=lambda s: s.encode(), num_ctx=1 << 20)


def test_create_stores_the_detected_family_and_show_reports_it(smol_store: Store,
                                                                 smol_url: str,
                                                                 smollm2_gguf: Path) -> None:
    jinja = read_gguf_info(smollm2_gguf).chat_template
    expected = choose_template(jinja, eos_token="<|im_end|>")
    assert expected is not None and expected.family == "chatml"
    m = smol_store.resolve(SMOL)
    assert smol_store.read_blob(m.layers_of(MEDIA_TEMPLATE)[0].digest).decode() == expected.template
    assert json.loads(smol_store.read_blob(m.layers_of(MEDIA_PARAMS)[0].digest)) == {
        "stop": ["<|im_start|>", "<|im_end|>"]}

    shown = ollama.Client(host=smol_url).show(SMOL)
    assert shown.template == expected.template
    assert "You are a helpful AI assistant named SmolLM" in shown.template
    assert 'stop                           "<|im_end|>"' in (shown.parameters or "")
    assert shown.modelinfo["tokenizer.ggml.tokens"] == []
    assert "TEMPLATE" in (shown.modelfile or "") and "{{ .Prompt }}" not in shown.modelfile

    from runtime.cli import main

    out = CliRunner().invoke(main, ["show", "--template", SMOL],
                             env={"OLLAMA_HOST": smol_url.removeprefix("http://")})
    assert out.exit_code == 0, out.output
    assert out.output == expected.template + "\n"


def test_prompts_are_the_jinja_bytes(smol_store: Store, smollm2_gguf: Path) -> None:
    jinja = read_gguf_info(smollm2_gguf).chat_template
    for conv in CONVERSATIONS:
        assert _prompt(smol_store, SMOL, conv) == render_jinja(jinja, messages=conv)


def test_show_modelfile_then_create_gives_identical_prompt_bytes(smol_store: Store,
                                                                   smol_url: str,
                                                                   tmp_path: Path) -> None:
    text = ollama.Client(host=smol_url).show(SMOL).modelfile
    (tmp_path / "Modelfile").write_text(text)
    from runtime.cli import main

    out = CliRunner().invoke(main, ["create", "smol-copy", "-f", str(tmp_path / "Modelfile")],
                             env={"OLLAMA_HOST": smol_url.removeprefix("http://")})
    assert out.exit_code == 0, out.output
    for conv in CONVERSATIONS:
        assert _prompt(smol_store, "smol-copy", conv) == _prompt(smol_store, SMOL, conv)
    def kinds(name: str) -> list[tuple[str, str]]:
        return [(x.media_type, x.digest) for x in smol_store.resolve(name).layers]

    assert kinds("smol-copy") == kinds(SMOL)


def test_greedy_chat_equals_llama_cpp_python(smol_url: str, smollm2_gguf: Path) -> None:
    from llama_cpp import Llama

    llm = Llama(model_path=str(smollm2_gguf), n_ctx=2048, seed=0, verbose=False)
    client = ollama.Client(host=smol_url)
    for conv in CONVERSATIONS:
        want = llm.create_chat_completion(messages=conv, temperature=0, max_tokens=32,
                                          repeat_penalty=GREEDY["repeat_penalty"])
        got = client.chat(model=SMOL, messages=conv, options={**GREEDY, "num_predict": 32})
        assert got.message.content == want["choices"][0]["message"]["content"]
        assert got.done_reason == want["choices"][0]["finish_reason"]
    llm.close()


def test_generation_stops_on_im_end_with_nothing_leaking(smol_url: str) -> None:
    client = ollama.Client(host=smol_url)
    r = client.chat(model=SMOL, messages=[{"role": "user", "content": "Say hello."}],
                    options={**GREEDY, "num_predict": 200})
    assert r.done_reason == "stop" and r.eval_count < 200
    assert r.message.content.strip()
    for marker in ("<|im_end|>", "<|im_start|>", "<|endoftext|>"):
        assert marker not in r.message.content
    chunks = list(client.chat(model=SMOL, stream=True, options={**GREEDY, "num_predict": 200},
                              messages=[{"role": "user", "content": "Say hello."}]))
    assert "".join(c.message.content for c in chunks) == r.message.content
    assert chunks[-1].done_reason == "stop"


def test_json_schema_format_yields_valid_json(smol_url: str) -> None:
    schema = {"type": "object", "required": ["city", "population"],
              "properties": {"city": {"type": "string", "maxLength": 24},
                             "population": {"type": "integer"}}}
    r = ollama.Client(host=smol_url).chat(
        model=SMOL, format=schema, options={**GREEDY, "num_predict": 96},
        messages=[{"role": "user", "content": "Give the largest city of Japan as JSON."}])
    doc = json.loads(r.message.content)
    assert set(doc) == {"city", "population"}
    assert isinstance(doc["city"], str) and isinstance(doc["population"], int)


def test_responses_and_messages_routes_answer_like_chat(smol_url: str) -> None:
    import anthropic
    import openai

    conv = CONVERSATIONS[1]
    want = ollama.Client(host=smol_url).chat(
        model=SMOL, messages=conv, options={"temperature": 0, "top_p": 1, "num_predict": 24})
    oa = openai.OpenAI(base_url=smol_url + "/v1", api_key="x", max_retries=0)
    r = oa.responses.create(model=SMOL, instructions=conv[0]["content"], input=conv[1:],
                            temperature=0, max_output_tokens=24)
    assert r.output_text == want.message.content
    an = anthropic.Anthropic(base_url=smol_url, api_key="x", max_retries=0)
    m = an.messages.create(model=SMOL, system=conv[0]["content"], messages=conv[1:],
                           max_tokens=24, extra_body={"temperature": 0, "top_p": 1})
    assert m.content[0].text == want.message.content
    assert m.stop_reason == ("end_turn" if want.done_reason == "stop" else "max_tokens")
