"""Runner processes and the scheduler against the real tiny GGUF through real llama-cpp-python."""
from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any

import pytest

from runtime.config import Settings
from runtime.errors import EngineError, ServerBusy
from runtime.serve.engine import LoadOptions, StopMatcher
from runtime.serve.runner.process import RunnerProcess
from runtime.serve.scheduler import ModelRef, Scheduler, start_runner

PROMPT = "<|im_start|>user\nhello<|im_end|>\n<|im_start|>assistant\n"


@pytest.fixture(scope="module")
def engine(tiny_gguf: Path) -> RunnerProcess:
    e = RunnerProcess.start(LoadOptions(model_path=tiny_gguf, n_ctx=256))
    yield e
    e.close()


def _chunks(engine: RunnerProcess, prompt: Any = PROMPT, fmt: Any = None, cancel_after: int = 0,
            **opts: Any) -> list:
    async def go() -> list:
        gen = await engine.generate(prompt, opts, fmt=fmt)
        out = []
        async for chunk in gen.chunks():
            out.append(chunk)
            if cancel_after and len(out) == cancel_after:
                gen.cancel()
        return out

    return asyncio.run(go())


def _run(engine: RunnerProcess, **opts: Any) -> tuple[str, Any]:
    chunks = _chunks(engine, **opts)
    return "".join(c.text for c in chunks), chunks[-1]


def test_same_seed_same_text_and_counters(engine: RunnerProcess) -> None:
    a, last = _run(engine, seed=11, num_predict=24, temperature=0.9)
    b, _ = _run(engine, seed=11, num_predict=24, temperature=0.9)
    c, _ = _run(engine, seed=12, num_predict=24, temperature=0.9)
    assert a == b and a != c
    assert last.done and last.done_reason == "length"
    assert last.eval_count == 24
    assert last.prompt_eval_count == len(engine.tokenize(PROMPT))
    assert last.prompt_eval_duration > 0 and last.eval_duration > 0
    assert last.context[: last.prompt_eval_count] == engine.tokenize(PROMPT)


def test_stop_string_cuts_output(engine: RunnerProcess) -> None:
    full, _ = _run(engine, seed=3, num_predict=30, temperature=0)
    stop = full[6:9]
    cut, last = _run(engine, seed=3, num_predict=30, temperature=0, stop=[stop])
    assert cut == full[: full.index(stop)]
    assert last.done_reason == "stop"


def test_stop_matcher_holds_back_partial_match() -> None:
    m = StopMatcher(["END"])
    assert m.feed("abcE") == ("abc", False)
    assert m.feed("N") == ("", False)
    assert m.feed("x") == ("ENx", False)
    assert m.feed("yyEND tail") == ("yy", True)


def test_cancel_stops_between_tokens(engine: RunnerProcess) -> None:
    chunks = _chunks(engine, cancel_after=3, num_predict=-1, temperature=0.8)
    assert chunks[-1].done and chunks[-1].done_reason == "cancel"
    # the runner is ahead of this reader by what was in flight, but far from its 2560-token cap
    assert chunks[-1].eval_count < 1280


def test_json_grammar_constrains_output(engine: RunnerProcess) -> None:
    text = "".join(c.text for c in _chunks(engine, fmt="json", num_predict=12, seed=1))
    assert text.lstrip().startswith(("{", "["))


def test_embeddings_are_normalised(tiny_gguf: Path) -> None:
    e = RunnerProcess.start(LoadOptions(model_path=tiny_gguf, n_ctx=128, embedding=True))
    try:
        vecs, count = e.embed(["hello world", "hi"])
    finally:
        e.close()
    assert len(vecs) == 2 and len(vecs[0]) == 64 and count > 2
    assert abs(sum(v * v for v in vecs[0]) - 1.0) < 1e-5
    assert vecs[0] != vecs[1]


def test_corrupt_file_is_engine_error(tmp_path: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"GGUF" + b"\x00" * 64)
    with pytest.raises(EngineError, match="unable to load model"):
        RunnerProcess.start(LoadOptions(model_path=bad))


def _ref(path: Path, name: str, digest: str) -> ModelRef:
    return ModelRef(name=name, digest=digest, load=LoadOptions(model_path=path, n_ctx=128))


def test_scheduler_parallel_queue_keepalive_and_lru(tiny_gguf: Path, tmp_path: Path) -> None:
    settings = Settings(models_dir=tmp_path, num_parallel=2, max_queue=2, max_loaded_models=1,
                        keep_alive=300.0)

    async def scenario() -> None:
        sched = Scheduler(settings)
        a = _ref(tiny_gguf, "a:latest", "sha256:aa")
        l1 = await sched.acquire(a)
        l2 = await sched.acquire(a)
        assert l1.engine is l2.engine              # one process, two slots for NUM_PARALLEL=2
        w1 = asyncio.create_task(sched.acquire(a))
        w2 = asyncio.create_task(sched.acquire(a))
        await asyncio.sleep(0.05)
        assert sched.pending == 2
        with pytest.raises(ServerBusy):
            await sched.acquire(a)
        sched.release(l1)
        l3 = await asyncio.wait_for(w1, 5)
        sched.release(l2)
        l4 = await asyncio.wait_for(w2, 5)
        sched.release(l3)
        sched.release(l4)
        [row] = sched.loaded()
        assert row.name == "a:latest" and row.size > 0
        # loading b evicts idle a (MAX_LOADED_MODELS=1)
        b = _ref(tiny_gguf, "b:latest", "sha256:bb")
        lb = await sched.acquire(b, keep_alive=0.2)
        assert [r.name for r in sched.loaded()] == ["b:latest"]
        sched.release(lb)
        await asyncio.sleep(0.5)
        assert sched.loaded() == []                # keep_alive expired
        lb = await sched.acquire(b, keep_alive=0)
        sched.release(lb)
        assert sched.loaded() == []                # keep_alive 0 unloads at once
        await sched.shutdown()

    asyncio.run(scenario())


def test_scheduler_load_failure_reaches_waiters(tmp_path: Path, tiny_gguf: Path) -> None:
    bad = tmp_path / "bad.gguf"
    bad.write_bytes(b"not a gguf at all")
    settings = Settings(models_dir=tmp_path)

    async def scenario() -> None:
        sched = Scheduler(settings)
        with pytest.raises(EngineError):
            await sched.acquire(_ref(bad, "bad:latest", "sha256:cc"))
        lease = await sched.acquire(_ref(tiny_gguf, "ok:latest", "sha256:dd"))
        sched.release(lease)
        await sched.shutdown()

    asyncio.run(scenario())


def test_loading_never_blocks_other_models(tiny_gguf: Path, tmp_path: Path) -> None:
    import time

    slow_path = tmp_path / "slow.gguf"
    slow_path.write_bytes(tiny_gguf.read_bytes())

    def loader(ref: ModelRef, n_seq: int) -> RunnerProcess:
        if ref.load.model_path == slow_path:
            time.sleep(1.5)                 # a big model still reading from disk
        return start_runner(ref, n_seq)

    async def scenario() -> None:
        sched = Scheduler(Settings(models_dir=tmp_path), loader=loader)
        fast = _ref(tiny_gguf, "fast:latest", "sha256:ee")
        sched.release(await sched.acquire(fast))
        slow_task = asyncio.create_task(sched.acquire(_ref(slow_path, "slow:latest", "sha256:ff")))
        await asyncio.sleep(0.1)
        lease = await sched.acquire(fast)
        assert not slow_task.done()         # the fast model was served while the slow loaded
        sched.release(lease)
        sched.release(await asyncio.wait_for(slow_task, 10))
        await sched.shutdown()

    asyncio.run(scenario())


def test_thinking_parser_splits_across_chunks() -> None:
    from runtime.api.thinking import ThinkingParser

    p = ThinkingParser(prompt="<|im_start|>assistant\n")
    out = [p.add(t) for t in ["  <thi", "nk>let me", " see</th", "ink>\n\nAnswer", " here"]]
    out.append(p.finish())
    assert "".join(t for t, _ in out) == "let me see"
    assert "".join(c for _, c in out) == "Answer here"
    q = ThinkingParser(prompt="assistant\n<think>\n")      # the template opened the tag already
    assert q.add("pondering</think>done") == ("pondering", "done")
    r = ThinkingParser(prompt="x")
    assert r.add("no tags at all") == ("", "no tags at all")


def test_memory_check_refuses_what_cannot_fit(tiny_gguf: Path, tmp_path: Path) -> None:
    from runtime.serve.engine import available_memory, check_memory, memory_needed

    opts = LoadOptions(model_path=tiny_gguf, n_ctx=2048)
    need = memory_needed(opts)
    # weights + KV cache (2 layers x 2048 ctx x K,V x 32 dims x f16) + overhead
    assert need == tiny_gguf.stat().st_size + 2048 * 2 * 2 * 32 * 2 + (256 << 20)
    check_memory(opts, available=need)
    with pytest.raises(EngineError, match="requires more system memory"):
        check_memory(opts, available=need - 1)
    meminfo = tmp_path / "meminfo"
    meminfo.write_text("MemTotal:       24000000 kB\nMemAvailable:    1000 kB\n")
    assert available_memory(meminfo) == 1000 * 1024
    assert available_memory(tmp_path / "absent") is None


def test_load_timeout_is_an_engine_error(tiny_gguf: Path, tmp_path: Path) -> None:
    import time

    def slow(ref: ModelRef, n_seq: int) -> RunnerProcess:
        time.sleep(1.0)
        return start_runner(ref, n_seq)

    async def scenario() -> None:
        sched = Scheduler(Settings(models_dir=tmp_path, load_timeout=0.2), loader=slow)
        with pytest.raises(EngineError, match="timed out waiting"):
            await sched.acquire(_ref(tiny_gguf, "slow:latest", "sha256:ab"))
        assert sched.loaded() == []
        await sched.shutdown()

    asyncio.run(scenario())


def test_embedding_reads_long_inputs_whole(tiny_gguf: Path) -> None:
    e = RunnerProcess.start(LoadOptions(model_path=tiny_gguf, n_ctx=1024, embedding=True))
    try:
        long = "word " * 700                      # > 512 tokens, the generation batch size
        [_full], n = e.embed([long])
        with pytest.raises(EngineError, match="exceeds"):
            e.embed(["word " * 1100], truncate=False)
    finally:
        e.close()
    assert n > 512


def test_overlong_prompt_keeps_num_keep_and_the_latest_tokens(tiny_gguf: Path) -> None:
    e = RunnerProcess.start(LoadOptions(model_path=tiny_gguf, n_ctx=64))
    try:
        prompt = list(range(97, 123)) * 4           # 104 byte tokens > 64
        *_, last = _chunks(e, prompt, num_predict=4, num_keep=5, seed=1)
    finally:
        e.close()
    kept = last.context[: last.prompt_eval_count]
    assert kept[:5] == prompt[:5] and kept[5:] == prompt[len(prompt) - (len(kept) - 5):]
    assert last.prompt_eval_count + last.eval_count <= 64 and last.eval_count == 4


def test_new_load_options_replace_the_runner_but_embeddings_stay(tiny_gguf: Path,
                                                                 tmp_path: Path) -> None:
    async def scenario() -> None:
        sched = Scheduler(Settings(models_dir=tmp_path))
        base = _ref(tiny_gguf, "m:latest", "sha256:12")
        emb = ModelRef(name="m:latest", digest="sha256:12",
                       load=LoadOptions(model_path=tiny_gguf, n_ctx=128, embedding=True))
        big = ModelRef(name="m:latest", digest="sha256:12",
                       load=LoadOptions(model_path=tiny_gguf, n_ctx=256))
        sched.release(await sched.acquire(base))
        [alone] = sched.loaded()
        sched.release(await sched.acquire(emb))
        # /api/ps: one row per model, its size counting both runners' caches, weights once
        [row] = sched.loaded()
        assert row.context_length == 128 and row.size > alone.size
        assert row.size < 2 * alone.size
        assert sorted(r.ref.load.embedding for r in sched._runners.values()) == [False, True]
        sched.release(await sched.acquire(big))      # num_ctx changed: reload, like Ollama
        [row] = sched.loaded()
        assert row.context_length == 256
        assert sorted((r.ref.load.embedding, r.ref.load.n_ctx)
                      for r in sched._runners.values()) == [(False, 256), (True, 128)]
        await sched.shutdown()

    asyncio.run(scenario())


def test_full_context_shifts_and_keeps_generating(tiny_gguf: Path) -> None:
    e = RunnerProcess.start(LoadOptions(model_path=tiny_gguf, n_ctx=64))
    try:
        chunks = _chunks(e, num_predict=150, seed=3)
        last = chunks[-1]
        assert last.done_reason == "length" and last.eval_count == 150   # past the 64 context
        assert len("".join(c.text for c in chunks)) > 0
        # the shifted context still answers like a fresh one would afterwards
        again, _ = _run(e, seed=11, num_predict=10)
        assert again
        # with a grammar the context cannot shift: a full context ends the reply
        *_, g = _chunks(e, fmt="json", num_predict=150, seed=3)
        assert g.done_reason == "length" and g.prompt_eval_count + g.eval_count <= 64
        *_, fill = _chunks(e, num_predict=-2, seed=3)
        assert fill.prompt_eval_count + fill.eval_count == 64
    finally:
        e.close()


def test_a_template_written_bos_is_not_doubled(tmp_path):
    """Jinja templates write bos_token; a model with add_bos_token must not get a second one."""
    import sys

    gguf = sys.modules["make_tiny_model"].write_tiny_gguf(tmp_path / "bos.gguf", add_bos=True)
    e = RunnerProcess.start(LoadOptions(model_path=gguf, n_ctx=128))
    try:
        bos = e.tokenize("<|endoftext|>", add_bos=False)[0]
        assert e.tokenize("hi")[0] == bos and e.tokenize("hi")[1] != bos
        with_bos = e.tokenize("<|endoftext|>hi")
        assert with_bos[0] == bos and with_bos[1] != bos
    finally:
        e.close()
