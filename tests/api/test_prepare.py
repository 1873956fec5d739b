"""The API's layers (issue 14): one call prepares a request (name -> model info -> options ->
load options -> a runner slot -> the prompt), the service raises domain errors only, and the
API maps them to the statuses clients have always seen."""
from __future__ import annotations

import asyncio
import time
from pathlib import Path
from typing import Any

import httpx
import pytest

from runtime.api.errors import status_for, to_api_error
from runtime.api.inference import Instant, PreparedRequest, check_capabilities, prepare
from runtime.api.schemas import ChatBody, GenerateBody, Message
from runtime.api.service import Service, check_format
from runtime.config import Settings
from runtime.errors import (
    InsufficientSpace,
    InvalidName,
    InvalidRequest,
    ModelNotFound,
    UnsupportedCapability,
)
from runtime.serve.scheduler import Scheduler


def _service(store: Any, models_dir: Path) -> Service:
    settings = Settings(models_dir=models_dir)
    return Service(settings, store, Scheduler(settings))


def test_prepare_returns_a_request_ready_to_run(tiny_store: Any, models_dir: Path) -> None:
    svc = _service(tiny_store, models_dir)

    async def scenario() -> None:
        try:
            body = ChatBody(model="tiny", messages=[Message(role="user", content="hi")],
                            options={"temperature": 0, "num_ctx": 256}, format="json",
                            top_logprobs=2)
            prepared = await prepare(svc, body, started=time.perf_counter_ns())
            assert isinstance(prepared, PreparedRequest)
            assert prepared.info.name.display == "tiny:latest"
            # defaults < Modelfile parameters < request options
            options = prepared.slot.options
            assert options["temperature"] == 0 and options["num_ctx"] == 256
            assert options["stop"] == ["<|im_end|>"] and options["top_k"] == 40
            assert prepared.slot.lease.engine.n_ctx == 256
            assert prepared.prompt == prepared.text
            assert "<|im_start|>user\nhi<|im_end|>" in prepared.text
            assert prepared.fmt == "json" and prepared.tools is None and prepared.images == []
            assert (prepared.logprobs, prepared.top_logprobs) == (True, 2)
            svc.release(prepared.slot)

            generate = GenerateBody(model="tiny", prompt="abc", raw=True)
            raw = await prepare(svc, generate, started=time.perf_counter_ns())
            assert isinstance(raw, PreparedRequest)
            assert raw.text == raw.prompt == "abc" and raw.think is None
            svc.release(raw.slot)
            generate = GenerateBody(model="tiny", prompt="abc", context=[1, 2])
            more = await prepare(svc, generate, started=time.perf_counter_ns())
            assert isinstance(more, PreparedRequest) and isinstance(more.prompt, list)
            assert more.prompt[:2] == [1, 2] and len(more.prompt) > 2 and "abc" in more.text
            svc.release(more.slot)

            assert await prepare(svc, ChatBody(model="tiny"), started=0) == Instant("load")
            assert await prepare(svc, ChatBody(model="tiny", keep_alive=0),
                                 started=0) == Instant("unload")
        finally:
            await svc.scheduler.shutdown()

    asyncio.run(scenario())


def test_service_raises_domain_errors_the_api_maps(tiny_store: Any, models_dir: Path) -> None:
    import runtime.api.service as service_module

    assert not hasattr(service_module, "ApiError")
    svc = _service(tiny_store, models_dir)

    def error(work: Any) -> Exception:
        with pytest.raises(Exception) as e:
            asyncio.run(work) if asyncio.iscoroutine(work) else work()
        return e.value

    cases = [
        (error(svc.model_info("")), InvalidRequest, 400, "model is required"),
        (error(svc.model_info("nope")), ModelNotFound, 404, 'model "nope" not found'),
        (error(svc.model_info("a b")), InvalidName, 400, None),
        (error(lambda: svc.keep_alive("forever")), InvalidRequest, 400, None),
        (error(lambda: check_format(42)), InvalidRequest, 400,
         'invalid format: expected "json" or a JSON schema object'),
    ]
    info = asyncio.run(svc.model_info("tiny"))
    cases.append((error(lambda: check_capabilities(info, "tiny", kind="chat", think=True)),
                  UnsupportedCapability, 400, '"tiny" does not support thinking'))
    cases.append((error(lambda: check_capabilities(info, "tiny", kind="chat", images=True)),
                  UnsupportedCapability, 400,
                  "registry.ollama.ai/library/tiny:latest does not support vision"))
    for err, kind, status, message in cases:
        assert isinstance(err, kind), err
        assert status_for(err) == status and to_api_error(err).status == status
        if message is not None:
            assert str(err) == message
    assert cases[3][0].field == "keep_alive"


def test_blob_upload_goes_through_the_store(live_server: Any, tiny_store: Any,
                                            monkeypatch: pytest.MonkeyPatch) -> None:
    """POST /api/blobs streams into Store.add_blob_stream: the store's space check answers
    507, its digest check 400 with Ollama's message, and nothing is left behind."""
    url = live_server()

    def full(needed: int, **_: Any) -> None:
        raise InsufficientSpace(str(tiny_store.root), needed, 0)

    digest = "sha256:" + "0" * 64
    with monkeypatch.context() as m:
        m.setattr(tiny_store, "check_space", full)
        r = httpx.post(f"{url}/api/blobs/{digest}", content=b"abc")
    assert r.status_code == 507 and "not enough disk space" in r.json()["error"]
    r = httpx.post(f"{url}/api/blobs/{digest}", content=b"abc")
    assert r.status_code == 400
    assert r.json()["error"] == (
        f'digest mismatch, expected "{digest}", got '
        '"sha256:ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"')
    assert not [p for p in tiny_store.blobs_dir.iterdir() if p.name.startswith(".tmp")]
