"""Model names: Ollama's rules (types/model/name.go), hf.co / hf:// references and local paths."""
from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import InvalidName, LlmcrateError
from runtime.models.names import (
    DEFAULT_HOST,
    HFFileRef,
    LocalPath,
    ModelName,
    is_valid_name,
    looks_like_path,
    parse_name,
    parse_reference,
)

# text -> (host, namespace, model, tag)
VALID = {
    "qwen2.5": ("registry.ollama.ai", "library", "qwen2.5", "latest"),
    "qwen2.5:0.5b": ("registry.ollama.ai", "library", "qwen2.5", "0.5b"),
    "llama3.2:1b-instruct-q4_K_M": ("registry.ollama.ai", "library", "llama3.2", "1b-instruct-q4_K_M"),
    "user/model": ("registry.ollama.ai", "user", "model", "latest"),
    "user/model:v1": ("registry.ollama.ai", "user", "model", "v1"),
    "example.com/ns/m:t": ("example.com", "ns", "m", "t"),
    "localhost:5000/ns/m": ("localhost:5000", "ns", "m", "latest"),
    "localhost:5000/ns/m:tag": ("localhost:5000", "ns", "m", "tag"),
    "10.0.0.5:5000/library/tiny:latest": ("10.0.0.5:5000", "library", "tiny", "latest"),
    "registry.ollama.ai/library/mistral:7b": ("registry.ollama.ai", "library", "mistral", "7b"),
    "hf.co/bartowski/Llama-3.2-1B-Instruct-GGUF:Q4_K_M":
        ("hf.co", "bartowski", "Llama-3.2-1B-Instruct-GGUF", "Q4_K_M"),
    "hf.co/user/repo": ("hf.co", "user", "repo", "latest"),
    "huggingface.co/user/repo:Q8_0": ("hf.co", "user", "repo", "Q8_0"),
    "HuggingFace.co/user/repo": ("hf.co", "user", "repo", "latest"),
    "_under/_score:_t": ("registry.ollama.ai", "_under", "_score", "_t"),
    "Mistral:Latest": ("registry.ollama.ai", "library", "Mistral", "Latest"),
    "a": ("registry.ollama.ai", "library", "a", "latest"),
    "m" * 80 + ":" + "t" * 80: ("registry.ollama.ai", "library", "m" * 80, "t" * 80),
    "h" * 350 + "/n/m": ("h" * 350, "n", "m", "latest"),
    "my-host_1.example/ns-1/model.v2:1.0-rc": ("my-host_1.example", "ns-1", "model.v2", "1.0-rc"),
}


@pytest.mark.parametrize("text", sorted(VALID))
def test_valid_names(text: str) -> None:
    name = parse_name(text)
    assert (name.host, name.namespace, name.model, name.tag) == VALID[text]
    assert name.scheme is None and name.digest is None
    assert is_valid_name(text)


# text -> the reason InvalidName must give
INVALID = {
    "": "name is empty",
    "A/b c": 'model part contains " "',
    "model:": "tag part is empty",
    ":tag": "model part is empty",
    "/model": "namespace part is empty",
    "ns/": "model part is empty",
    "a//b": "namespace part is empty",
    "h//m": "namespace part is empty",
    "a/b/c/d": 'too many "/"-separated parts',
    "name.with.dots/model": 'namespace part contains "."',
    "ns/mo del": 'model part contains " "',
    "model:t@g": 'digest "g" is not sha256',
    "model:ta g": 'tag part contains " "',
    "-model": 'model part must start with a letter, a digit or "_", not "-"',
    ".model": 'model part must start with a letter, a digit or "_", not "."',
    "model:-tag": 'tag part must start with a letter, a digit or "_", not "-"',
    "mödel": 'model part contains "ö"',
    "model\t": 'model part contains "\\t"',
    "m" * 81: "model part is too long (81 characters, at most 80)",
    "m:" + "t" * 81: "tag part is too long (81 characters, at most 80)",
    "n" * 81 + "/m": "namespace part is too long (81 characters, at most 80)",
    "h" * 351 + "/n/m": "host part is too long (351 characters, at most 350)",
    "host:5000/m": 'namespace part contains ":"',
    "ftp://host/ns/m": 'unsupported scheme "ftp"',
    "http://host/m": "http:// needs a host",
    "https://m": "https:// needs a host",
    "ho$t/ns/m": 'host part contains "$"',
    "model@sha256:abc": 'digest "sha256:abc" is not sha256:<64 hex digits>',
    "@sha256:" + "a" * 64: "model part is empty",
    "model:tag+Q4_0": 'tag part contains "+"',
    "ns/model/": "model part is empty",
}


@pytest.mark.parametrize("text", sorted(INVALID))
def test_invalid_names_say_what_is_wrong(text: str) -> None:
    with pytest.raises(InvalidName) as info:
        parse_name(text)
    err = info.value
    assert INVALID[text] in str(err)
    assert str(err).startswith(f'invalid model name "{text}": ')
    assert err.name == text
    assert isinstance(err, LlmcrateError) and err.exit_code != 0
    assert not is_valid_name(text)


def test_error_message_matches_the_documented_form() -> None:
    with pytest.raises(InvalidName) as info:
        parse_name("A/b c")
    assert str(info.value) == 'invalid model name "A/b c": model part contains " "'


def test_tag_is_after_the_last_colon_that_follows_the_last_slash() -> None:
    name = parse_name("host:8080/ns/model")
    assert name.host == "host:8080" and name.tag == "latest"
    name = parse_name("host:8080/ns/model:8080")
    assert name.host == "host:8080" and name.tag == "8080"


def test_scheme_is_kept_for_the_base_url() -> None:
    name = parse_name("http://10.0.0.5:5000/library/tiny:latest")
    assert name.scheme == "http"
    assert name.host == "10.0.0.5:5000"
    assert name.base_url == "http://10.0.0.5:5000"
    assert str(name) == "10.0.0.5:5000/library/tiny:latest"
    assert parse_name("HTTPS://example.com/ns/m").scheme == "https"
    assert parse_name("example.com/ns/m").base_url == "https://example.com"
    assert parse_name("qwen2.5").base_url == f"https://{DEFAULT_HOST}"


def test_digest_is_parsed_and_normalised() -> None:
    hexd = "AB" * 32
    name = parse_name(f"qwen2.5:0.5b@sha256-{hexd}")
    assert name.digest == "sha256:" + hexd.lower()
    assert name.tag == "0.5b"
    assert str(name) == f"registry.ollama.ai/library/qwen2.5:0.5b@sha256:{hexd.lower()}"
    assert parse_name(str(name)) == name
    assert parse_name(f"m@sha256:{hexd}").tag == "latest"


@pytest.mark.parametrize(("text", "display"), [
    ("qwen2.5:0.5b", "qwen2.5:0.5b"),
    ("qwen2.5", "qwen2.5:latest"),
    ("registry.ollama.ai/library/qwen2.5:0.5b", "qwen2.5:0.5b"),
    ("REGISTRY.OLLAMA.AI/Library/Qwen:X", "Qwen:X"),
    ("user/m", "user/m:latest"),
    ("registry.ollama.ai/user/m:t", "user/m:t"),
    ("localhost:5000/ns/m:tag", "localhost:5000/ns/m:tag"),
    ("localhost:5000/library/m", "localhost:5000/library/m:latest"),
    ("hf.co/user/repo:Q4_K_M", "hf.co/user/repo:Q4_K_M"),
])
def test_display_is_the_shortest_form(text: str, display: str) -> None:
    assert parse_name(text).display == display
    # the display form reads back as the same model
    assert parse_name(display).key() == parse_name(text).key()


def test_str_is_fully_qualified_and_round_trips() -> None:
    for text in VALID:
        name = parse_name(text)
        assert str(name) == f"{name.host}/{name.namespace}/{name.model}:{name.tag}"
        assert parse_name(str(name)) == name
        assert parse_name(name.display) == name


def test_comparison_is_case_insensitive_but_case_is_kept() -> None:
    a = parse_name("Mistral:Latest")
    b = parse_name("registry.ollama.ai/LIBRARY/mistral:latest")
    assert a.key() == b.key() == ("registry.ollama.ai", "library", "mistral", "latest")
    assert a.same_as(b)
    assert a.model == "Mistral"            # case preserved for display and paths
    assert not a.same_as(parse_name("mistral:7b"))


def test_manifest_relpath_follows_ollamas_layout() -> None:
    assert parse_name("qwen2.5:0.5b").manifest_relpath() == Path(
        "manifests/registry.ollama.ai/library/qwen2.5/0.5b")
    assert parse_name("localhost:5000/ns/m:t").manifest_relpath() == Path("manifests/localhost:5000/ns/m/t")
    assert parse_name("hf.co/u/r:Q8_0").manifest_relpath() == Path("manifests/hf.co/u/r/Q8_0")


def test_model_name_is_frozen_and_hashable() -> None:
    name = parse_name("qwen2.5")
    with pytest.raises(AttributeError):
        name.tag = "x"  # type: ignore[misc]
    assert {name: 1}[parse_name("qwen2.5:latest")] == 1
    assert isinstance(name, ModelName) and name.repository == "library/qwen2.5"


def test_huggingface_names() -> None:
    name = parse_name("hf.co/bartowski/SmolLM2-135M-Instruct-GGUF:Q4_K_M")
    assert name.is_huggingface
    assert name.base_url == "https://hf.co"
    assert not parse_name("qwen2.5").is_huggingface
    assert parse_reference("huggingface.co/u/r:Q4_0") == parse_name("hf.co/u/r:Q4_0")


# --- parse_reference -------------------------------------------------------------------------

@pytest.mark.parametrize(("text", "expected"), [
    ("hf://bartowski/Llama-3.2-1B-Instruct-GGUF/Llama-3.2-1B-Instruct-Q4_K_M.gguf",
     HFFileRef("bartowski", "Llama-3.2-1B-Instruct-GGUF", "Llama-3.2-1B-Instruct-Q4_K_M.gguf", None)),
    ("hf://user/repo/file.gguf@main", HFFileRef("user", "repo", "file.gguf", "main")),
    ("hf://user/repo/sub/dir/file.GGUF@refs/pr/1", HFFileRef("user", "repo", "sub/dir/file.GGUF", "refs/pr/1")),
    ("HF://user/repo.x/f.gguf", HFFileRef("user", "repo.x", "f.gguf", None)),
])
def test_hf_file_references(text: str, expected: HFFileRef) -> None:
    ref = parse_reference(text)
    assert ref == expected
    assert ref.repo_id == f"{expected.user}/{expected.repo}"
    assert parse_reference(str(ref)) == ref


@pytest.mark.parametrize(("text", "reason"), [
    ("hf://user/repo", "expected hf://<user>/<repo>/<file>.gguf"),
    ("hf://user//file.gguf", "expected hf://<user>/<repo>/<file>.gguf"),
    ("hf://user/repo/model.safetensors", "name a .gguf file"),
    ("hf://us er/repo/f.gguf", 'Hugging Face user contains " "'),
    ("hf://user/re$po/f.gguf", 'Hugging Face repo contains "$"'),
    ("hf://user/repo/f.gguf@", 'revision after "@" is empty'),
    ("hf://user/repo/../f.gguf", "not a plain path"),
])
def test_bad_hf_references(text: str, reason: str) -> None:
    with pytest.raises(InvalidName, match=reason.replace("$", r"\$").replace(".", r"\.")):
        parse_reference(text)


@pytest.mark.parametrize("text", [
    "/abs/model.bin", "./model", "../up/model", "~/models/x.gguf", "model.gguf", "Model.GGUF",
    ".", "..",
])
def test_paths_are_local(text: str) -> None:
    assert looks_like_path(text)
    ref = parse_reference(text)
    assert isinstance(ref, LocalPath)


def test_tilde_is_expanded_and_relative_paths_use_base_dir(tmp_path: Path) -> None:
    ref = parse_reference("~/m.gguf")
    assert ref == LocalPath(Path.home() / "m.gguf")
    assert parse_reference("./m.gguf", base_dir=tmp_path) == LocalPath(tmp_path / "m.gguf")
    assert parse_reference("/abs/m.gguf", base_dir=tmp_path) == LocalPath(Path("/abs/m.gguf"))
    assert parse_reference("m.gguf") == LocalPath(Path("m.gguf"))


def test_existing_file_under_base_dir_wins_over_a_name(tmp_path: Path) -> None:
    # As Ollama's FROM: a relative reference that exists next to the Modelfile is a file.
    (tmp_path / "weights").mkdir()
    (tmp_path / "weights" / "model").write_bytes(b"GGUF")
    assert parse_reference("weights/model", base_dir=tmp_path) == LocalPath(tmp_path / "weights/model")
    assert parse_reference("weights/model") == parse_name("weights/model")
    assert parse_reference("other/model", base_dir=tmp_path) == parse_name("other/model")


def test_names_stay_names() -> None:
    assert parse_reference("qwen2.5:0.5b") == parse_name("qwen2.5:0.5b")
    assert parse_reference("localhost:5000/ns/m") == parse_name("localhost:5000/ns/m")
    with pytest.raises(InvalidName, match='model part contains " "'):
        parse_reference("bad name")
    with pytest.raises(InvalidName, match="name is empty"):
        parse_reference("")
