"""runtime.transfer.sources: a reference resolves to its source once; pulls go to that source's puller."""
from __future__ import annotations

from pathlib import Path

import pytest

from runtime.errors import InvalidName, SourceUnavailable
from runtime.models.names import HFFileRef, ModelName
from runtime.models.store import Manifest, Store
from runtime.progress import ProgressCallback, ProgressEvent
from runtime.transfer import sources


@pytest.mark.parametrize("text, source, name", [
    ("qwen2.5:0.5b", "ollama", "registry.ollama.ai/library/qwen2.5:0.5b"),
    ("10.0.0.5:5000/team/m", "ollama", "10.0.0.5:5000/team/m:latest"),
    ("http://10.0.0.5:5000/team/m:v1", "ollama", "http://10.0.0.5:5000/team/m:v1"),
    ("hf.co/someone/Tiny-GGUF:Q8_0", "huggingface", "hf.co/someone/Tiny-GGUF:Q8_0"),
    ("huggingface.co/someone/Tiny-GGUF", "huggingface", "hf.co/someone/Tiny-GGUF:latest"),
    ("HF://someone/Tiny-GGUF/t-Q8_0.gguf@main", "huggingface", "hf://someone/Tiny-GGUF/t-Q8_0.gguf@main"),
])
def test_resolve_names_the_source_and_a_canonical_name(text: str, source: str, name: str) -> None:
    ref = sources.resolve(text)
    assert (ref.source, ref.name) == (source, name)
    assert isinstance(ref.parts, HFFileRef if name.startswith("hf://") else ModelName)
    assert sources.resolve(ref.name) == ref          # canonical: resolving it again changes nothing


def test_bad_references_fail_before_any_source() -> None:
    with pytest.raises(InvalidName, match="unsupported scheme"):
        sources.resolve("s3://bucket/model")
    with pytest.raises(InvalidName, match="hf://<user>/<repo>/<file>.gguf"):
        sources.resolve("hf://someone/repo")


def test_a_source_without_a_puller_is_one_clear_error(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(sources, "entry_points", lambda group: [])
    with pytest.raises(SourceUnavailable) as e:
        sources.resolve("hf.co/someone/Tiny-GGUF")
    assert e.value.source == "huggingface" and "online host" in (e.value.hint or "")
    ref = sources.resolve("hf.co/someone/Tiny-GGUF", available=False)   # understood all the same
    assert ref.source == "huggingface"
    with pytest.raises(SourceUnavailable, match="no puller for model source 'elsewhere'"):
        sources.get_puller("elsewhere")


def test_the_hf_puller_comes_from_bundlers_entry_point() -> None:
    from bundler.huggingface import HuggingFacePuller

    assert isinstance(sources.get_puller("huggingface"), HuggingFacePuller)


def test_pull_goes_to_the_registered_puller(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> None:
    calls: list[tuple[sources.SourceRef, sources.PullOptions | None]] = []

    class Fake:
        def pull(self, store: Store, ref: sources.SourceRef, *,
                 progress: ProgressCallback | None = None,
                 options: sources.PullOptions | None = None) -> Manifest:
            calls.append((ref, options))
            if progress:
                progress(ProgressEvent("success"))
            raise SystemExit  # no manifest to give: the call is what counts

    monkeypatch.setitem(sources._PULLERS, "huggingface", Fake())
    seen: list[ProgressEvent] = []
    ref = sources.resolve("hf.co/someone/Tiny-GGUF:Q8_0")
    opts = sources.PullOptions(revision="main")
    with pytest.raises(SystemExit):
        sources.pull(Store(tmp_path / "m"), ref, progress=seen.append, options=opts)
    assert calls == [(ref, opts)] and seen == [ProgressEvent("success")]
