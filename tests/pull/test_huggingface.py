"""Hugging Face pulls through huggingface_hub against a live fake Hub (HF_ENDPOINT on loopback)."""
from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from click.testing import CliRunner

from bundler.chat_templates import FAMILIES, choose_template
from bundler.huggingface import choose_projector, pull_hf, quant_of
from runtime.cli import main
from runtime.errors import AuthError, DigestMismatch, ModelNotFound, RegistryError
from runtime.models.store import (
    MEDIA_LICENSE,
    MEDIA_MODEL,
    MEDIA_PARAMS,
    MEDIA_PROJECTOR,
    MEDIA_TEMPLATE,
    Store,
)
from runtime.prompt import execute_ollama, render_jinja
from tests.fakes import FakeHub

make_tiny_model = sys.modules["make_tiny_model"]
REPO = "bartowski/Tiny-GGUF"


@pytest.fixture(scope="module")
def ggufs(tmp_path_factory: pytest.TempPathFactory) -> dict[str, Path]:
    d = tmp_path_factory.mktemp("hf-gguf")
    return {"q4": make_tiny_model.write_tiny_gguf(d / "q4.gguf", seed=1),
            "q8": make_tiny_model.write_tiny_gguf(d / "q8.gguf", seed=2)}


@pytest.fixture
def hub(tmp_path: Path, ggufs: dict[str, Path], monkeypatch: pytest.MonkeyPatch) -> Iterator[FakeHub]:
    with FakeHub(tmp_path / "hub") as h:
        h.add_repo(REPO, {"Tiny-Q4_K_M.gguf": ggufs["q4"], "Tiny-Q8_0.gguf": ggufs["q8"],
                          "README.md": b"# Tiny\n"}, license="apache-2.0")
        monkeypatch.setenv("HF_ENDPOINT", h.base_url)
        yield h


def _layers(store: Store, name: str) -> dict[str, bytes]:
    m = store.resolve(name)
    return {x.media_type: store.read_blob(x.digest) for x in m.layers}


def test_hf_co_default_quant_becomes_an_ollama_model(store, hub, ggufs):
    events: list[dict] = []
    m = pull_hf(store, f"hf.co/{REPO}", progress=lambda e: events.append(e.as_json()))
    name = f"hf.co/{REPO}:latest"
    layers = _layers(store, name)
    assert layers[MEDIA_MODEL] == ggufs["q4"].read_bytes()
    family = next(f for f in FAMILIES if f.name == "chatml")
    assert layers[MEDIA_TEMPLATE].decode() == family.template
    assert json.loads(layers[MEDIA_PARAMS]) == {"stop": ["<|im_start|>", "<|im_end|>"]}
    assert layers[MEDIA_LICENSE] == b"apache-2.0"
    config = json.loads(store.read_blob(m.config.digest))
    assert config["llmcrate"]["revision"] == hub.repos[REPO].commit
    assert config["model_family"] == "llama"
    assert config["file_type"] == "Q4_K_M"
    statuses = [e["status"] for e in events]
    assert statuses[0] == "pulling manifest" and statuses[-1] == "success"
    assert any(e.get("completed") == e.get("total") == ggufs["q4"].stat().st_size for e in events)
    # the huggingface_hub cache (HF_HOME) is used: a second pull downloads nothing
    served = hub.bytes_served()
    pull_hf(store, f"hf.co/{REPO}")
    assert hub.bytes_served() == served


def test_quant_is_matched_case_insensitively(store, hub, ggufs):
    pull_hf(store, f"hf.co/{REPO}:q8_0")
    assert _layers(store, f"hf.co/{REPO}:q8_0")[MEDIA_MODEL] == ggufs["q8"].read_bytes()


def test_missing_quant_lists_the_ones_there_are(store, hub):
    with pytest.raises(RegistryError, match=r"no Q5_K_S GGUF; quants available: Q4_K_M, Q8_0"):
        pull_hf(store, f"hf.co/{REPO}:Q5_K_S")
    assert store.list_models() == []


def test_hf_file_reference_with_pinned_revision(store, hub, ggufs):
    commit = hub.repos[REPO].commit
    m = pull_hf(store, f"hf://{REPO}/Tiny-Q8_0.gguf@{commit}")
    assert _layers(store, f"hf.co/{REPO}:Q8_0")[MEDIA_MODEL] == ggufs["q8"].read_bytes()
    assert json.loads(store.read_blob(m.config.digest))["llmcrate"]["revision"] == commit
    with pytest.raises(RegistryError, match="revision not found"):
        pull_hf(store, f"hf://{REPO}/Tiny-Q8_0.gguf", revision="no-such-branch")
    pull_hf(store, f"hf://{REPO}/Tiny-Q8_0.gguf", name="tiny-q8:latest")  # a name of our own
    assert store.resolve("tiny-q8").digest == m.digest


def test_split_gguf_keeps_every_shard_in_order(store, hub, ggufs, tmp_path):
    shard2 = tmp_path / "shard2"
    shard2.write_bytes(b"GGUF" + bytes(range(256)) * 100)
    hub.add_repo("someone/Split-GGUF", {
        "Split-Q4_K_M-00002-of-00002.gguf": shard2,
        "Split-Q4_K_M-00001-of-00002.gguf": ggufs["q4"]})
    m = pull_hf(store, "hf.co/someone/Split-GGUF")
    models = [store.read_blob(x.digest) for x in m.layers if x.media_type == MEDIA_MODEL]
    assert models == [ggufs["q4"].read_bytes(), shard2.read_bytes()]


def test_vision_repo_pulls_the_projector_of_the_chosen_quant(store, hub, ggufs, tmp_path):
    from runtime.models.show import show_model

    model, mmproj = make_tiny_model.write_tiny_vision(tmp_path / "v")
    f16 = tmp_path / "mmproj-f16.gguf"
    f16.write_bytes(mmproj.read_bytes() + b"")
    q8 = make_tiny_model.write_tiny_mmproj(tmp_path / "mmproj-q8.gguf", seed=5)
    hub.add_repo("ggml-org/Tiny-VL-GGUF", {
        "Tiny-VL-Q4_K_M.gguf": model, "Tiny-VL-Q8_0.gguf": model,
        "mmproj-Tiny-VL-f16.gguf": f16, "mmproj-Tiny-VL-Q8_0.gguf": q8,
        "other/mmproj-elsewhere-Q4_K_M.gguf": q8})
    m = pull_hf(store, "hf.co/ggml-org/Tiny-VL-GGUF")          # Q4_K_M: no Q4 projector here
    assert [x.media_type for x in m.layers][:2] == [MEDIA_MODEL, MEDIA_PROJECTOR]
    assert _layers(store, "hf.co/ggml-org/Tiny-VL-GGUF")[MEDIA_PROJECTOR] == f16.read_bytes()
    body = show_model(store, "hf.co/ggml-org/Tiny-VL-GGUF")
    assert "vision" in body["capabilities"] and body["projector_info"]["clip.projector_type"] == "mlp"
    pull_hf(store, "hf.co/ggml-org/Tiny-VL-GGUF:Q8_0")
    assert _layers(store, "hf.co/ggml-org/Tiny-VL-GGUF:Q8_0")[MEDIA_PROJECTOR] == q8.read_bytes()
    # an hf:// file reference gets the projector beside it too; a projector is not a model
    pull_hf(store, "hf://ggml-org/Tiny-VL-GGUF/Tiny-VL-Q8_0.gguf", name="vl-file")
    assert _layers(store, "vl-file")[MEDIA_PROJECTOR] == q8.read_bytes()
    with pytest.raises(RegistryError, match="is a multimodal projector; name the model GGUF"):
        pull_hf(store, "hf://ggml-org/Tiny-VL-GGUF/mmproj-Tiny-VL-f16.gguf")


@pytest.mark.parametrize("files, model, want", [
    (["mmproj-F16.gguf", "mmproj-Q8_0.gguf"], "M-Q8_0.gguf", "mmproj-Q8_0.gguf"),
    (["mmproj-F16.gguf", "mmproj-Q8_0.gguf"], "M-Q4_K_M.gguf", "mmproj-F16.gguf"),
    (["mmproj-BF16.gguf", "mmproj-F32.gguf"], "M-Q4_K_M.gguf", "mmproj-BF16.gguf"),
    (["mmproj.gguf"], "M-Q4_K_M.gguf", "mmproj.gguf"),
    (["sub/mmproj-F16.gguf", "mmproj-F32.gguf"], "sub/M-Q4_K_M.gguf", "sub/mmproj-F16.gguf"),
    (["other/mmproj-F16.gguf", "mmproj-F32.gguf"], "sub/M-Q4_K_M.gguf", "mmproj-F32.gguf"),
    (["other/mmproj-F16.gguf"], "M-Q4_K_M.gguf", None),
    ([], "M-Q4_K_M.gguf", None),
])
def test_choose_projector(files, model, want):
    assert choose_projector(files, model) == want


def test_gated_repo_needs_hf_token(store, hub, monkeypatch):
    hub.token = "hf_secret"
    with pytest.raises(AuthError, match="HF_TOKEN"):
        pull_hf(store, f"hf.co/{REPO}")
    monkeypatch.setenv("HF_TOKEN", "hf_secret")
    pull_hf(store, f"hf.co/{REPO}")
    assert store.list_models()


def test_unknown_repo_is_model_not_found(store, hub):
    with pytest.raises(ModelNotFound, match='model "hf.co/nobody/Nothing-GGUF" not found'):
        pull_hf(store, "hf.co/nobody/Nothing-GGUF")


def test_corrupted_download_is_a_digest_mismatch(store, hub):
    hub.faults.wrong_digest = True
    with pytest.raises(DigestMismatch, match="digest mismatch"):
        pull_hf(store, f"hf.co/{REPO}")
    assert store.list_models() == []
    hub.faults.wrong_digest = False
    pull_hf(store, f"hf.co/{REPO}")  # the bad cached copy was dropped: fetched again, fine
    assert store.list_models()


def test_cli_pulls_hf_co(hub, models_dir):
    result = CliRunner().invoke(main, ["pull", f"hf.co/{REPO}:Q8_0"])
    assert result.exit_code == 0, result.output
    assert result.output.splitlines()[-1] == "success"
    assert Store(models_dir).resolve(f"hf.co/{REPO}:Q8_0")


@pytest.mark.parametrize("name", ["Llama-3.2-1B-Instruct-Q4_K_M.gguf", "qwen2.5-0.5b-instruct-q4_k_m.gguf",
                                  "gemma-2-2b-it.Q4_K_M.gguf",
                                  "Model-Q4_K_M-00001-of-00003.gguf"])
def test_quant_of(name):
    assert quant_of(name) == "Q4_K_M"


# --- chat template mapping: the Go template renders what the Jinja renders --------------------

JINJA = {
    "chatml": make_tiny_model.CHATML_TEMPLATE,
    "llama3": ("{% for message in messages %}{{ '<|start_header_id|>' + message['role'] + "
               "'<|end_header_id|>\\n\\n' + message['content'] | trim + '<|eot_id|>' }}{% endfor %}"
               "{% if add_generation_prompt %}{{ '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
               "{% endif %}"),
    "phi3": ("{% for message in messages %}{% if message['role'] == 'system' %}"
             "{{ '<|system|>\\n' + message['content'] + '<|end|>\\n' }}"
             "{% elif message['role'] == 'user' %}{{ '<|user|>\\n' + message['content'] + '<|end|>\\n' }}"
             "{% elif message['role'] == 'assistant' %}"
             "{{ '<|assistant|>\\n' + message['content'] + '<|end|>\\n' }}{% endif %}{% endfor %}"
             "{% if add_generation_prompt %}{{ '<|assistant|>\\n' }}{% else %}{{ eos_token }}{% endif %}"),
    "gemma": ("{% if messages[0]['role'] == 'system' %}{% set first = messages[0]['content'] + '\\n\\n' %}"
              "{% set loop_messages = messages[1:] %}{% else %}{% set first = '' %}"
              "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
              "{% set role = 'model' if message['role'] == 'assistant' else message['role'] %}"
              "{{ '<start_of_turn>' + role + '\\n' + (first if loop.first else '') + message['content'] "
              "+ '<end_of_turn>\\n' }}{% endfor %}{% if add_generation_prompt %}"
              "{{ '<start_of_turn>model\\n' }}{% endif %}"),
    "mistral": ("{% if messages[0]['role'] == 'system' %}{% set system = messages[0]['content'] %}"
                "{% set loop_messages = messages[1:] %}{% else %}{% set system = '' %}"
                "{% set loop_messages = messages %}{% endif %}{% for message in loop_messages %}"
                "{% if message['role'] == 'user' %}{% if loop.last and system %}"
                "{{ '[INST] ' + system + '\\n\\n' + message['content'] + ' [/INST]' }}{% else %}"
                "{{ '[INST] ' + message['content'] + ' [/INST]' }}{% endif %}"
                "{% else %}{{ message['content'] + '</s>' }}{% endif %}{% endfor %}"),
}
CONVERSATION = [{"role": "system", "content": "Be brief."},
                {"role": "user", "content": "Hi there"},
                {"role": "assistant", "content": "Hello!"},
                {"role": "user", "content": "What is 2+2?"}]


@pytest.mark.parametrize("family", sorted(JINJA))
def test_mapped_go_template_renders_like_the_jinja(family):
    choice = choose_template(JINJA[family])
    assert choice is not None and choice.family == family
    want = render_jinja(JINJA[family], messages=CONVERSATION)
    got = execute_ollama(choice.template, messages=CONVERSATION)
    assert got == want


def test_unknown_template_is_kept_as_jinja_with_eos_stop():
    jinja = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:"
    choice = choose_template(jinja, eos_token="</s>")
    assert choice is not None and choice.is_jinja
    assert choice.template == jinja and choice.stop == ["</s>"]
    assert choose_template(None) is None


def test_unmapped_template_writes_no_template_layer(store, tmp_path, monkeypatch):
    """Only Go templates go into the store (Ollama reads it too); the GGUF keeps its Jinja
    chat_template, which the runtime renders as the fallback."""
    jinja = "{% for m in messages %}### {{ m['role'] }}: {{ m['content'] }}\n{% endfor %}### assistant:"
    gguf = make_tiny_model.write_tiny_gguf(tmp_path / "odd.gguf", chat_template=jinja)
    with FakeHub(tmp_path / "hub2") as h:
        h.add_repo("someone/Odd-GGUF", {"Odd-Q4_K_M.gguf": gguf})
        monkeypatch.setenv("HF_ENDPOINT", h.base_url)
        pull_hf(store, "hf.co/someone/Odd-GGUF")
    layers = _layers(store, "hf.co/someone/Odd-GGUF:latest")
    assert MEDIA_TEMPLATE not in layers
    assert json.loads(layers[MEDIA_PARAMS]) == {"stop": ["<|im_end|>"]}

    from runtime.models.gguf_info import read_gguf_info
    from runtime.models.model import load_model_info
    from runtime.prompt import chat_prompt

    info = load_model_info(store, "hf.co/someone/Odd-GGUF")
    assert info.template is None
    prompt = chat_prompt(template=info.template,
                         jinja_template=read_gguf_info(info.model_path).chat_template,
                         messages=[{"role": "user", "content": "hi"}])
    assert prompt == "### user: hi\n### assistant:"
