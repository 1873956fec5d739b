"""The mtmd path on real llama.cpp: the tiny vision model (``make_tiny_model.py --vision``)
loaded with llama-cpp-python's low-level API, images evaluated into one sequence of a
multi-sequence context, then greedy sampling on that sequence."""
from __future__ import annotations

import ctypes
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from runtime.errors import EngineError, ImageError
from runtime.serve.vision import MTMD_MARKER, VisionContext, split_image_tags
from vision.pictures import bmp, png

llama_cpp = pytest.importorskip("llama_cpp")

CHATML = "<|im_start|>user\n{}<|im_end|>\n<|im_start|>assistant\n"
N_BATCH = 64


class Loaded:
    def __init__(self, model_path: Path, mmproj: Path, *, n_ctx: int = 1024) -> None:
        llama_cpp.llama_backend_init()
        mp = llama_cpp.llama_model_default_params()
        mp.n_gpu_layers = 0
        self.model = llama_cpp.llama_model_load_from_file(str(model_path).encode(), mp)
        assert self.model
        cp = llama_cpp.llama_context_default_params()
        cp.n_ctx, cp.n_batch, cp.n_ubatch, cp.n_seq_max = n_ctx, N_BATCH, N_BATCH, 2
        cp.n_threads = cp.n_threads_batch = 1
        self.ctx = llama_cpp.llama_init_from_model(self.model, cp)
        assert self.ctx
        self.vision = VisionContext(mmproj, self.model, n_threads=1)
        self.vocab = llama_cpp.llama_model_get_vocab(self.model)

    def clear(self) -> None:
        llama_cpp.llama_memory_clear(llama_cpp.llama_get_memory(self.ctx), True)

    def logits(self) -> list[float]:
        n_vocab = llama_cpp.llama_vocab_n_tokens(self.vocab)
        ptr = llama_cpp.llama_get_logits_ith(self.ctx, -1)
        return [ptr[i] for i in range(n_vocab)]

    def generate(self, seq_id: int, n_past: int, n: int = 6) -> str:
        chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
        llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
        batch = llama_cpp.llama_batch_init(1, 0, 1)
        out = b""
        try:
            for _ in range(n):
                tok = llama_cpp.llama_sampler_sample(chain, self.ctx, -1)
                buf = ctypes.create_string_buffer(64)
                k = llama_cpp.llama_token_to_piece(self.vocab, tok, buf, 64, 0, True)
                out += buf.raw[:k]
                batch.n_tokens = 1
                batch.token[0], batch.pos[0], batch.n_seq_id[0] = tok, n_past, 1
                batch.seq_id[0][0], batch.logits[0] = seq_id, 1
                assert llama_cpp.llama_decode(self.ctx, batch) == 0
                n_past += 1
        finally:
            llama_cpp.llama_batch_free(batch)
            llama_cpp.llama_sampler_free(chain)
        return out.decode("utf-8", "replace")

    def close(self) -> None:
        self.vision.close()
        llama_cpp.llama_free(self.ctx)
        llama_cpp.llama_model_free(self.model)


@pytest.fixture(scope="module")
def loaded(tiny_vision: tuple[Path, Path]) -> Iterator[Loaded]:
    lm = Loaded(*tiny_vision)
    yield lm
    lm.close()


def _eval(lm: Loaded, prompt: str, images: list[bytes], *, seq_id: int = 0) -> Any:
    lm.clear()
    return lm.vision.eval_parts(lm.ctx, split_image_tags(prompt, images), seq_id=seq_id,
                                n_past=0, n_batch=N_BATCH)


def test_marker_matches_library(loaded: Loaded):
    assert loaded.vision.marker == MTMD_MARKER
    assert not loaded.vision.uses_non_causal and not loaded.vision.uses_mrope
    assert loaded.vision.tokens_per_image == 16      # (32 / 8) ** 2, whatever the picture size


def test_chunks_place_the_image_where_the_tag_is(loaded: Loaded):
    parts = split_image_tags(CHATML.format("[img-0]what is this?"), [png()])
    with loaded.vision.tokenize(parts) as p:
        kinds = [c.kind for c in p.chunks]
        assert kinds == ["text", "image", "text"]
        assert p.chunks[1].n_tokens == 16            # (32 / 8) ** 2 patches
        assert p.n_images == 1 and p.n_tokens == p.n_pos == sum(c.n_tokens for c in p.chunks)
        assert len(p.chunks[1].id) == 64             # sha256 of the image bytes


def test_image_then_text_answers_on_its_sequence(loaded: Loaded):
    r = _eval(loaded, CHATML.format("[img-0]what is in the picture?"), [png()], seq_id=1)
    assert r.n_images == 1 and r.n_past == r.n_tokens > 16
    answer = loaded.generate(1, r.n_past)
    assert answer.strip()


def test_the_picture_changes_the_answer(loaded: Loaded):
    prompt = CHATML.format("[img-0]describe")
    _eval(loaded, prompt, [png(rgb=(255, 0, 0))])
    red = loaded.logits()
    _eval(loaded, prompt, [png(rgb=(255, 0, 0))])
    assert loaded.logits() == red                              # deterministic
    _eval(loaded, prompt, [png(rgb=(0, 0, 255))])
    blue = loaded.logits()
    assert max(abs(a - b) for a, b in zip(red, blue)) > 1e-3   # the embeddings reached the model


def test_several_images_and_bmp(loaded: Loaded):
    r = _eval(loaded, CHATML.format("[img-0] and [img-1] and [img-0] again"),
              [png(rgb=(0, 255, 0)), bmp()])
    assert r.n_images == 3 and r.n_tokens > 48


def test_typed_marker_stays_text(loaded: Loaded):
    parts = split_image_tags(CHATML.format(f"{MTMD_MARKER} [img-0]"), [png()])
    with loaded.vision.tokenize(parts) as p:
        assert [c.kind for c in p.chunks] == ["text", "image", "text"]


def test_corrupt_image_is_an_image_error(loaded: Loaded):
    good = png()
    corrupt = good[:40] + b"\x00" * 30 + good[70:]   # header intact, IDAT broken
    with pytest.raises(ImageError, match="image 2: could not decode the image"):
        loaded.vision.tokenize(["x", good, "y", corrupt])
    with pytest.raises(ImageError, match="image 1: unsupported image format WebP"):
        loaded.vision.tokenize([b"RIFF\x1e\x00\x00\x00WEBPVP8 " + b"\x00" * 22])


def test_context_full_is_reported_and_rolled_back(tiny_vision: tuple[Path, Path]):
    lm = Loaded(*tiny_vision, n_ctx=256)
    try:
        n_ctx = llama_cpp.llama_n_ctx(lm.ctx)
        mem = llama_cpp.llama_get_memory(lm.ctx)
        with lm.vision.tokenize([png(), "x " * n_ctx, png()]) as p:
            assert p.n_pos > n_ctx                   # the KV cells run out on the way
            with pytest.raises(EngineError, match="cannot evaluate the prompt with its images: "
                                                  "the context is full"):
                lm.vision.eval(lm.ctx, p, seq_id=0, n_past=0, n_batch=N_BATCH)
        assert llama_cpp.llama_memory_seq_pos_max(mem, 0) == -1   # nothing half-written stays
    finally:
        lm.close()


def test_corrupt_image_never_starts_ffmpeg(loaded: Loaded, tmp_path: Path,
                                           monkeypatch: pytest.MonkeyPatch):
    """libmtmd (built with video support) hands buffers stb_image cannot decode to ffmpeg from
    PATH; a corrupt upload must not start a process."""
    ran = tmp_path / "ran"
    for tool in ("ffmpeg", "ffprobe"):
        script = tmp_path / tool
        script.write_text(f"#!/bin/sh\necho {tool} >> {ran}\nexit 1\n")
        script.chmod(0o755)
    monkeypatch.setenv("PATH", f"{tmp_path}:/usr/bin:/bin")
    good = png()
    with pytest.raises(ImageError, match="could not decode"):
        loaded.vision.tokenize([good[:40] + b"\x00" * 30 + good[70:]])
    assert not ran.exists()


def test_image_sequence_continues_in_a_shared_batch(loaded: Loaded):
    """The runner's loop: seq 1 gets its image prompt through mtmd, seq 0 a text prompt through
    llama_decode; then one batch per step advances both sequences."""
    lm = loaded
    r = _eval(lm, CHATML.format("[img-0]what is it?"), [png()], seq_id=1)
    greedy = _greedy()
    first = llama_cpp.llama_sampler_sample(greedy, lm.ctx, -1)
    text = CHATML.format("hello").encode()
    toks = (llama_cpp.llama_token * 256)()
    n = llama_cpp.llama_tokenize(lm.vocab, text, len(text), toks, 256, False, True)
    batch = llama_cpp.llama_batch_init(256, 0, 2)
    try:
        batch.n_tokens = n
        for i in range(n):
            batch.token[i], batch.pos[i], batch.n_seq_id[i] = toks[i], i, 1
            batch.seq_id[i][0], batch.logits[i] = 0, int(i == n - 1)
        assert llama_cpp.llama_decode(lm.ctx, batch) == 0
        past = {0: n, 1: r.n_past}
        nxt = {0: llama_cpp.llama_sampler_sample(greedy, lm.ctx, n - 1), 1: first}
        for _ in range(4):
            batch.n_tokens = 2
            for i, seq in enumerate((0, 1)):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = nxt[seq], past[seq], 1
                batch.seq_id[i][0], batch.logits[i] = seq, 1
                past[seq] += 1
            assert llama_cpp.llama_decode(lm.ctx, batch) == 0
            nxt = {seq: llama_cpp.llama_sampler_sample(greedy, lm.ctx, i)
                   for i, seq in enumerate((0, 1))}
        mem = llama_cpp.llama_get_memory(lm.ctx)
        assert llama_cpp.llama_memory_seq_pos_max(mem, 1) == r.n_past + 3
        assert llama_cpp.llama_memory_seq_pos_max(mem, 0) == n + 3
    finally:
        llama_cpp.llama_batch_free(batch)
        llama_cpp.llama_sampler_free(greedy)


def _greedy() -> Any:
    chain = llama_cpp.llama_sampler_chain_init(llama_cpp.llama_sampler_chain_default_params())
    llama_cpp.llama_sampler_chain_add(chain, llama_cpp.llama_sampler_init_greedy())
    return chain


def test_hold_last_leaves_the_last_token_for_the_shared_batch(loaded: Loaded):
    prompt = CHATML.format("[img-0]describe it")
    whole = _eval(loaded, prompt, [png()])
    expected = loaded.logits()
    loaded.clear()
    held = loaded.vision.eval_parts(loaded.ctx, split_image_tags(prompt, [png()]), seq_id=0,
                                    n_past=0, n_batch=N_BATCH, hold_last=True)
    assert held.pending_token is not None and whole.pending_token is None
    assert held.n_past == whole.n_past - 1 and held.n_tokens == whole.n_tokens
    mem = llama_cpp.llama_get_memory(loaded.ctx)
    assert llama_cpp.llama_memory_seq_pos_max(mem, 0) == held.n_past - 1
    batch = llama_cpp.llama_batch_init(1, 0, 1)
    try:
        batch.n_tokens = 1
        batch.token[0], batch.pos[0], batch.n_seq_id[0] = held.pending_token, held.n_past, 1
        batch.seq_id[0][0], batch.logits[0] = 0, 1
        assert llama_cpp.llama_decode(loaded.ctx, batch) == 0
    finally:
        llama_cpp.llama_batch_free(batch)
    got = loaded.logits()
    assert max(abs(a - b) for a, b in zip(got, expected)) < 1e-3


def test_encode_on_a_worker_then_decode_equals_eval(loaded: Loaded):
    """The runner's split path (projector on its encoder thread, embeddings decoded later by
    the batching loop) gives the very logits of the one-call path, several images included."""
    import concurrent.futures

    prompt = CHATML.format("[img-0] left, [img-1] right: which is red?")
    images = [png(rgb=(255, 0, 0)), png(rgb=(0, 0, 255))]
    whole = _eval(loaded, prompt, images)
    expected = loaded.logits()
    loaded.clear()
    with loaded.vision.tokenize(split_image_tags(prompt, images)) as p, \
            concurrent.futures.ThreadPoolExecutor(1) as pool:
        embeddings = pool.submit(loaded.vision.encode, p).result()
        assert [e is None for e in embeddings] == [c.kind == "text" for c in p.chunks]
        split = loaded.vision.eval_encoded(loaded.ctx, p, embeddings, seq_id=0, n_past=0,
                                           n_batch=N_BATCH)
    assert (split.n_past, split.n_tokens, split.n_images) == (whole.n_past, whole.n_tokens, 2)
    assert loaded.logits() == expected
