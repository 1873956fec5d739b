"""``llmcrate serve``: run the API server on ``OLLAMA_HOST`` with uvicorn until stopped."""
from __future__ import annotations

import errno
import logging
import socket

from runtime import __version__
from runtime.config import Settings
from runtime.errors import AddressInUse, ConfigError
from runtime.models.store import Store

logger = logging.getLogger(__name__)


def bind_socket(settings: Settings) -> socket.socket:
    """Bind the listening socket first, so a busy port is one clear error, not a traceback."""
    host, port = settings.host.host, settings.host.port
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    # IPPROTO_TCP explicitly: asyncio sets TCP_NODELAY on accepted connections only when the
    # listening socket says it is TCP; without it every streamed first token waits ~40 ms
    # for Nagle + delayed ACK.
    sock = socket.socket(family, socket.SOCK_STREAM, socket.IPPROTO_TCP)
    sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    try:
        sock.bind((host, port))
    except OSError as e:
        sock.close()
        if e.errno == errno.EADDRINUSE:
            raise AddressInUse(str(settings.host)) from e
        raise ConfigError("OLLAMA_HOST", f"cannot listen on {settings.host}: {e.strerror}") from e
    sock.listen(2048)
    sock.set_inheritable(True)
    return sock


def prepare_store(settings: Settings) -> Store:
    """The store the server uses, pruned at startup as Ollama does unless OLLAMA_NOPRUNE:
    blobs no manifest references and stale partial downloads are removed."""
    store = Store(settings.models_dir)
    if not settings.noprune:
        removed = store.gc()
        if removed:
            logger.info("pruned %d unused blob(s) from %s", len(removed), store.blobs_dir)
    return store


def configure_logging(settings: Settings) -> None:
    """The server log carries llmcrate's INFO lines, as Ollama's does (runners started and
    loaded, requests cancelled, blobs pruned); OLLAMA_DEBUG=1 adds the debug lines (rendered
    prompts, scheduling). Other libraries stay at the CLI's WARNING."""
    logging.getLogger("runtime").setLevel(logging.DEBUG if settings.debug else logging.INFO)
    asyncio_log = logging.getLogger("asyncio")
    if not any(isinstance(f, _LeftClientNoise) for f in asyncio_log.filters):
        asyncio_log.addFilter(_LeftClientNoise())


class _LeftClientNoise(logging.Filter):
    """asyncio warns "socket.send() raised exception." for every write after a streaming client
    has gone (dozens per Ctrl-C in ``llmcrate run``); the server notices the disconnect and
    cancels the generation anyway (its runner logs the cancellation), so the line is noise."""

    def filter(self, record: logging.LogRecord) -> bool:
        return record.getMessage() != "socket.send() raised exception."


def serve(settings: Settings) -> None:
    """Serve until SIGINT/SIGTERM. Raises AddressInUse when the port is taken."""
    import uvicorn

    from runtime.api import create_app

    sock = bind_socket(settings)
    try:
        store = prepare_store(settings)
    except BaseException:
        sock.close()
        raise
    configure_logging(settings)
    app = create_app(settings, store=store)
    config = uvicorn.Config(app, log_level="debug" if settings.debug else "info",
                            access_log=True, timeout_keep_alive=30, proxy_headers=False,
                            # running generations are cancelled after this on shutdown
                            timeout_graceful_shutdown=5)
    server = uvicorn.Server(config)
    # uvicorn's logger is the one `serve` shows at INFO (the CLI keeps the rest at WARNING)
    logging.getLogger("uvicorn.error").info(
        "Listening on %s (llmcrate %s, models in %s)", settings.host, __version__,
        settings.models_dir)
    try:
        server.run(sockets=[sock])
    finally:
        sock.close()
