"""The model surface clients see (issue 11), on tiny generated models: a Jinja template shown
and round-tripped, unload on delete, think levels, the version and time shapes."""
from __future__ import annotations

import json
import logging
import re
import sys
from pathlib import Path
from typing import Any

import httpx
import ollama
import openai
import pytest
from click.testing import CliRunner

from runtime import OLLAMA_API_VERSION, __version__
from runtime.api.prompting import build_chat_prompt
from runtime.models.create import CreateRequest, create_from_request
from runtime.models.model import load_model_info
from runtime.models.store import MEDIA_TEMPLATE, Store

make_tiny_model = sys.modules["make_tiny_model"]

ODD_JINJA = ("{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}"
             "{% if add_generation_prompt %}### assistant:{% endif %}")
OTHER_JINJA = ("{% for m in messages %}>> {{ m['role'] | upper }}: {{ m['content'] }}\n"
               "{% endfor %}>> ASSISTANT:")
RFC3339_NANO = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d{1,9})?(Z|[+-]\d\d:\d\d)$")
CONV = [{"role": "system", "content": "Be brief."}, {"role": "user", "content": "hi"}]


def _prompt(store: Store, name: str, messages: list[dict[str, Any]] = CONV) -> str:
    return build_chat_prompt(load_model_info(store, name), [dict(m) for m in messages],
                             tools=None, tokenize=lambda s: s.encode(), num_ctx=1 << 20)


@pytest.fixture
def odd_store(tmp_path: Path) -> Store:
    """``odd``: a GGUF whose chat_template is of no known family, created without TEMPLATE."""
    gguf = make_tiny_model.write_tiny_gguf(tmp_path / "odd.gguf", chat_template=ODD_JINJA)
    store = Store(tmp_path / "odd-models")
    blob = store.add_blob_file(gguf)
    create_from_request(store, "odd", CreateRequest(files={"odd.gguf": blob.digest}))
    return store


def _cli(url: str, *args: str) -> Any:
    from runtime.cli import main

    return CliRunner().invoke(main, list(args), env={"OLLAMA_HOST": url.removeprefix("http://")})


def test_an_unknown_family_shows_its_jinja_and_round_trips(live_server, odd_store: Store,
                                                           tmp_path: Path) -> None:
    assert not odd_store.resolve("odd").layers_of(MEDIA_TEMPLATE)   # the GGUF's own is used
    url = live_server(store=odd_store)
    shown = ollama.Client(host=url).show("odd")
    assert shown.template == ODD_JINJA
    assert _cli(url, "show", "--template", "odd").output == ODD_JINJA + "\n"
    (tmp_path / "Modelfile").write_text(shown.modelfile)
    out = _cli(url, "create", "odd-copy", "-f", str(tmp_path / "Modelfile"))
    assert out.exit_code == 0, out.output
    assert not odd_store.resolve("odd-copy").layers_of(MEDIA_TEMPLATE)
    assert _prompt(odd_store, "odd-copy") == _prompt(odd_store, "odd") == (
        "### system: Be brief.\n### user: hi\n### assistant:")


def test_a_jinja_template_in_a_modelfile_is_used_and_shown(live_server, odd_store: Store,
                                                           tmp_path: Path) -> None:
    url = live_server(store=odd_store)
    (tmp_path / "Modelfile").write_text(f'FROM odd\nTEMPLATE """{OTHER_JINJA}"""\n')
    out = _cli(url, "create", "other", "-f", str(tmp_path / "Modelfile"))
    assert out.exit_code == 0, out.output
    layer = odd_store.resolve("other").layers_of(MEDIA_TEMPLATE)[0]
    assert odd_store.read_blob(layer.digest).decode() == OTHER_JINJA
    assert _prompt(odd_store, "other") == ">> SYSTEM: Be brief.\n>> USER: hi\n>> ASSISTANT:"
    assert ollama.Client(host=url).show("other").template == OTHER_JINJA
    r = ollama.Client(host=url).chat(model="other", messages=CONV,
                                     options={"num_predict": 2, "seed": 1})
    assert r.done and r.prompt_eval_count > 0   # rendered as Jinja (as Go it does not parse)


def test_a_chatml_jinja_template_in_a_modelfile_becomes_the_go_template(tmp_path: Path,
                                                                        tiny_gguf: Path) -> None:
    from runtime.models.create import create_model
    from runtime.models.modelfile import parse_modelfile
    from runtime.prompt.families import FAMILIES

    store = Store(tmp_path / "m")
    mf = parse_modelfile(f'FROM {tiny_gguf}\nTEMPLATE """{make_tiny_model.CHATML_TEMPLATE}"""\n')
    create_model(store, "c", mf, base_dir=tmp_path)
    layer = store.resolve("c").layers_of(MEDIA_TEMPLATE)[0]
    chatml = next(f for f in FAMILIES if f.name == "chatml")
    assert store.read_blob(layer.digest).decode() == chatml.template


def test_a_broken_jinja_template_is_refused_before_writing(tmp_path: Path, tiny_gguf: Path) -> None:
    from runtime.errors import TemplateError
    from runtime.models.create import create_model
    from runtime.models.modelfile import parse_modelfile

    store = Store(tmp_path / "m")
    mf = parse_modelfile(f'FROM {tiny_gguf}\nTEMPLATE """{{% for m in messages %}}{{{{ m"""\n')
    with pytest.raises(TemplateError, match="chat template"):
        create_model(store, "bad", mf, base_dir=tmp_path)
    assert store.list_models() == []


def _loaded(url: str) -> list[str]:
    return [m["name"] for m in httpx.get(url + "/api/ps").json()["models"]]


def test_delete_unloads_the_model_unless_another_name_uses_it(live_server) -> None:
    url = live_server()
    client = ollama.Client(host=url)
    client.generate(model="tiny", prompt="hi", options={"num_predict": 1}, keep_alive="10m")
    assert _loaded(url) == ["tiny:latest"]
    client.copy("tiny", "twin")
    client.delete("tiny")
    assert _loaded(url) == ["tiny:latest"], "twin still points at the same model"
    client.delete("twin")
    assert _loaded(url) == []


@pytest.mark.parametrize("think", [True, "high", "medium", "low", "max"])
def test_thinking_on_a_model_without_it_is_400(live_server, think: Any) -> None:
    url = live_server()
    for route, body in (("/api/chat", {"messages": [{"role": "user", "content": "hi"}]}),
                        ("/api/generate", {"prompt": "hi"})):
        r = httpx.post(url + route, json={"model": "tiny", "think": think, "stream": False, **body})
        assert r.status_code == 400 and r.json() == {"error": '"tiny" does not support thinking'}


@pytest.mark.parametrize("think,message", [
    ("extreme", 'invalid think value: "extreme"'), (3, "think must be a boolean or string")])
def test_invalid_think_values_are_400(live_server, think: Any, message: str) -> None:
    r = httpx.post(live_server() + "/api/chat", json={
        "model": "tiny", "think": think, "stream": False,
        "messages": [{"role": "user", "content": "hi"}]})
    assert r.status_code == 400 and r.json()["error"].startswith(message)


def test_reasoning_effort_on_a_model_without_thinking_is_400(live_server) -> None:
    client = openai.OpenAI(base_url=live_server() + "/v1", api_key="x", max_retries=0)
    with pytest.raises(openai.BadRequestError, match="does not support thinking"):
        client.chat.completions.create(model="tiny", reasoning_effort="high",
                                       messages=[{"role": "user", "content": "hi"}])
    with pytest.raises(openai.BadRequestError, match="invalid reasoning value"):
        client.chat.completions.create(model="tiny", reasoning_effort="bogus",  # type: ignore[arg-type]
                                       messages=[{"role": "user", "content": "hi"}])
    ok = client.chat.completions.create(model="tiny", reasoning_effort="none", max_tokens=2,
                                        messages=[{"role": "user", "content": "hi"}])
    assert ok.choices[0].message.content is not None


def test_think_level_reaches_the_template(live_server, tiny_store: Store,
                                          caplog: pytest.LogCaptureFixture) -> None:
    blob = tiny_store.resolve("tiny").layers[0].digest
    create_from_request(tiny_store, "leveled", CreateRequest(
        files={"t.gguf": blob},
        template="{{ if .Think }}[think {{ .ThinkLevel }}] {{ end }}{{ .Prompt }}"))
    url = live_server()
    caplog.set_level(logging.DEBUG, logger="runtime.api.prompting")
    r = httpx.post(url + "/api/generate", json={"model": "leveled", "prompt": "hi", "think": "low",
                                                "stream": False, "options": {"num_predict": 1}})
    assert r.status_code == 200, r.text
    prompts = [json.loads(rec.getMessage().split("prompt=", 1)[1]) for rec in caplog.records
               if rec.getMessage().startswith("generate request")]
    assert prompts == ["[think low] hi"]


def test_version_and_times_have_ollama_shapes(live_server) -> None:
    url = live_server()
    r = httpx.get(url + "/api/version")
    assert r.json() == {"version": OLLAMA_API_VERSION}
    assert r.headers["x-llmcrate-version"] == __version__
    tags = httpx.get(url + "/api/tags").json()["models"]
    assert RFC3339_NANO.match(tags[0]["modified_at"]), tags[0]["modified_at"]
    shown = httpx.post(url + "/api/show", json={"model": "tiny"}).json()
    assert RFC3339_NANO.match(shown["modified_at"]), shown["modified_at"]
    assert shown["model_info"]["tokenizer.ggml.tokens"] == []
    assert shown["model_info"]["tokenizer.ggml.merges"] == []


def test_rfc3339_nano_formatter() -> None:
    import datetime as dt
    import os
    import time

    from runtime.format import rfc3339_nano

    old = os.environ.get("TZ")
    try:
        os.environ["TZ"] = "UTC"
        time.tzset()
        assert rfc3339_nano(1_700_000_000_123_456_789, ns=True) == "2023-11-14T22:13:20.123456789Z"
        assert rfc3339_nano(1_700_000_000.5) == "2023-11-14T22:13:20.5Z"
        assert rfc3339_nano(dt.datetime(2023, 11, 14, 22, 13, 20, tzinfo=dt.timezone.utc)) == \
            "2023-11-14T22:13:20Z"
        os.environ["TZ"] = "Asia/Kolkata"
        time.tzset()
        assert rfc3339_nano(1_700_000_000, ns=False) == "2023-11-15T03:43:20+05:30"
    finally:
        if old is None:
            os.environ.pop("TZ", None)
        else:
            os.environ["TZ"] = old
        time.tzset()
