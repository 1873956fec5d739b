"""How the routers wait for a run and answer with it, whatever the wire format.

A request waits for its model unless the client leaves (:func:`unless_disconnected`); a
streamed answer waits for its first piece before the 200 goes out (:func:`started`), so a
failure before any output still gets a real status; an answer that is not streamed is
collected while the client is watched (:func:`collect`). Server-sent events are framed by
:func:`sse_data` (OpenAI's ``data:`` lines) and :func:`sse_event` (``event:`` + ``data:``,
as Anthropic's Messages and OpenAI's Responses streams write them).
"""
from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass, field
from typing import Any, AsyncIterator, Awaitable, Callable, TypeVar

from runtime.api.errors import ApiError
from runtime.api.inference import Piece, Run
from runtime.api.service import CancelToken
from runtime.serve.engine import Chunk

T = TypeVar("T")
Receive = Callable[[], Awaitable[Any]]


async def watch_disconnect(receive: Receive, cancel: CancelToken) -> None:
    """Set ``cancel`` when the client goes away (for answers that are not streamed)."""
    while not cancel.is_set():
        message = await receive()
        if message.get("type") == "http.disconnect":
            cancel.set()
            return


async def unless_disconnected(receive: Receive, work: Awaitable[T]) -> T:
    """Await ``work`` (e.g. waiting in the queue for a model), abandoning it if the client
    disconnects first: a request nobody waits for must not hold a queue place or a slot."""
    task = asyncio.ensure_future(work)
    watcher = asyncio.ensure_future(_disconnected(receive))
    try:
        done, _ = await asyncio.wait({task, watcher}, return_when=asyncio.FIRST_COMPLETED)
    except BaseException:
        task.cancel()
        raise
    finally:
        watcher.cancel()
    if task in done:
        return task.result()
    task.cancel()
    try:
        await task
    except BaseException:  # noqa: BLE001 - cancelled on purpose
        pass
    raise ApiError(499, "client disconnected")


async def _disconnected(receive: Receive) -> None:
    while True:
        message = await receive()
        if message.get("type") == "http.disconnect":
            return


async def started(run: Run) -> AsyncIterator[Piece]:
    """The run's pieces, once the first one is there: wait for it before answering 200, so
    early failures get a real status. Closing the result stops the run and closes its pieces
    (which gives its runner slot back)."""
    try:
        first = await run.pieces.__anext__()
    except StopAsyncIteration:
        raise ApiError(500, "generation ended without output") from None

    async def chained() -> AsyncIterator[Piece]:
        try:
            yield first
            async for piece in run.pieces:
                yield piece
        finally:
            run.cancel.set()
            await run.pieces.aclose()  # type: ignore[attr-defined]

    return chained()


@dataclass
class Collected:
    """A whole answer, for a request that is not streamed."""

    text: str
    thinking: str
    tool_calls: list[dict[str, Any]]
    logprobs: list[dict[str, Any]]
    final: Chunk


async def collect(receive: Receive, run: Run) -> Collected:
    """Every piece of the run joined, stopping the run if the client leaves."""
    watcher = asyncio.create_task(watch_disconnect(receive, run.cancel))
    out = _Parts()
    try:
        async for piece in run.pieces:
            out.add(piece)
    finally:
        watcher.cancel()
        await run.pieces.aclose()  # type: ignore[attr-defined]
    if out.final is None:
        raise ApiError(500, "generation ended without a result")
    return Collected(text="".join(out.text), thinking="".join(out.thinking),
                     tool_calls=out.calls, logprobs=out.logprobs, final=out.final)


@dataclass
class _Parts:
    text: list[str] = field(default_factory=list)
    thinking: list[str] = field(default_factory=list)
    calls: list[dict[str, Any]] = field(default_factory=list)
    logprobs: list[dict[str, Any]] = field(default_factory=list)
    final: Chunk | None = None

    def add(self, piece: Piece) -> None:
        self.text.append(piece.content)
        self.thinking.append(piece.thinking)
        self.calls.extend(piece.tool_calls)
        self.logprobs.extend(piece.logprobs)
        if piece.final is not None:
            self.final = piece.final


def _json(obj: Any) -> str:
    return json.dumps(obj, ensure_ascii=False, separators=(",", ":"))


def sse_data(obj: Any) -> bytes:
    """One server-sent event with only a ``data:`` line (OpenAI's chat and completions)."""
    return f"data: {_json(obj)}\n\n".encode()


def sse_event(event: str, data: dict[str, Any]) -> bytes:
    """One named server-sent event (Anthropic's Messages, OpenAI's Responses)."""
    return f"event: {event}\ndata: {_json(data)}\n\n".encode()
