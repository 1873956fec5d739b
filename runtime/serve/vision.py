"""Images for vision models: checking what clients send, and feeding images to llama.cpp.

Two halves, so the API process never needs llama.cpp to reject a bad image:

- Plain Python (no llama.cpp import): :func:`decode_base64_image`, :func:`parse_data_uri`,
  :func:`sniff_image` / :func:`check_image` (magic bytes and header dimensions of the formats
  llama.cpp's ``stb_image`` decodes: PNG, JPEG, GIF, BMP), and the prompt markers:
  :func:`split_image_tags` turns Ollama's ``[img-N]`` tags in a rendered prompt into text and
  image parts, :func:`to_mtmd_prompt` into text carrying ``mtmd``'s media marker.
  Every refusal is an :class:`~runtime.errors.ImageError` (HTTP 400).
- :class:`VisionContext`: an ``mtmd`` context (llama.cpp's multimodal library, as
  llama-cpp-python 0.3.36 exposes it in ``llama_cpp.mtmd_cpp``) for a loaded ``llama_model``.
  :meth:`VisionContext.tokenize` turns parts (text and image bytes) into chunks;
  :meth:`VisionContext.eval` decodes them into one sequence of a ``llama_context`` starting
  at ``n_past`` (text chunks as tokens, image chunks encoded by the projector, their embeddings
  decoded), so generation continues on that sequence with ``llama_decode``.

Image placement: the prompt builder (``runtime.prompt.ollama``) gives every image of every
message a tag ``[img-N]`` where the message puts ``[img]``, else before its text (Ollama's
``chatPrompt``); N indexes the list of all images of the conversation in order. The runner
splits the rendered prompt at those tags (:func:`split_image_tags`) and tokenizes the parts
with ``mtmd_tokenize_from_parts``, so a user who types ``<__media__>`` gets text, never a
phantom image. Projectors that wrap images in their own tokens (gemma3's
``<start_of_image>``, qwen's ``<|vision_start|>`` …) get them from ``mtmd`` itself.
"""
from __future__ import annotations

import base64
import binascii
import ctypes
import logging
import re
import struct
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Union

from runtime.errors import EngineError, ImageError

logger = logging.getLogger(__name__)

#: Largest image accepted, in decoded bytes (Ollama's CLI allows 100 MB files; a 20 MB photo
#: is already far more than a projector's 336-1024 px input needs).
MAX_IMAGE_BYTES = 20 << 20
#: Largest decoded size: ``stb_image`` allocates width*height*3 bytes before mtmd resizes, so
#: a tiny file claiming 60000x60000 pixels must be refused from its header.
MAX_IMAGE_SIDE = 16384
MAX_IMAGE_PIXELS = 50_000_000
#: ``mtmd_default_marker()`` (checked against the library in the tests).
MTMD_MARKER = "<__media__>"
#: What ``stb_image`` (as built into libmtmd) decodes and we accept.
SUPPORTED_FORMATS = ("png", "jpeg", "gif", "bmp")
_SUPPORTED_TEXT = "PNG, JPEG, GIF or BMP"

IMAGE_TAG = re.compile(r"\[img-(\d+)\]")

Part = Union[str, bytes]


@dataclass(frozen=True)
class ImageFacts:
    """What an image's header says."""

    format: str   # one of SUPPORTED_FORMATS
    width: int
    height: int


# -- base64 and data: URIs ----------------------------------------------------------------------

_DATA_URI = re.compile(r"data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?P<params>(?:;[^;,]*)*?);base64,",
                       re.IGNORECASE)


def decode_base64_image(data: str, *, index: int | None = None,
                        max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """One entry of Ollama's ``images`` (standard base64, as Go's ``[]byte`` JSON) -> bytes.

    A ``data:image/…;base64,`` prefix is tolerated (some clients send one). Line breaks are
    ignored, as Go's decoder does. The size limit is checked before decoding.

    Raises:
        ImageError: not a string, not base64 (or cut short), empty, or over ``max_bytes``.
    """
    if not isinstance(data, str):
        raise ImageError(f"expected a base64 string, got {type(data).__name__}", index=index)
    text = data
    m = _DATA_URI.match(text)
    if m:
        text = text[m.end():]
    text = text.replace("\r", "").replace("\n", "")
    if not text:
        raise ImageError("empty image data", index=index)
    estimated = len(text) * 3 // 4
    if estimated > max_bytes + 2:
        raise ImageError(f"image is too large ({_mb(estimated)}; the limit is {_mb(max_bytes)})",
                         index=index)
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        if re.search(r"[-_]", text) and re.fullmatch(r"[A-Za-z0-9_-]*=*", text):
            reason = "invalid base64 image data (URL-safe alphabet; use standard base64)"
        elif len(text) % 4 and re.fullmatch(r"[A-Za-z0-9+/]*=*", text):
            reason = "invalid base64 image data (truncated: its length is not a multiple of 4)"
        else:
            reason = "invalid base64 image data"
        raise ImageError(reason, index=index) from None
    if len(raw) > max_bytes:
        raise ImageError(f"image is too large ({_mb(len(raw))}; the limit is {_mb(max_bytes)})",
                         index=index)
    return raw


def parse_data_uri(url: Any, *, index: int | None = None,
                   max_bytes: int = MAX_IMAGE_BYTES) -> bytes:
    """An OpenAI ``image_url`` value -> image bytes. Only base64 ``data:`` URIs are accepted
    (as Ollama: the server fetches nothing); the image itself is checked by :func:`check_image`.

    Raises:
        ImageError: a URL that is not a base64 data URI, a non-image media type, bad base64.
    """
    if not isinstance(url, str) or not url:
        raise ImageError("image_url must be a data URI string", index=index)
    low = url[:16].lower()
    if low.startswith(("http://", "https://", "file:", "ftp://")):
        scheme = url.split(":", 1)[0].lower()
        raise ImageError(f"{scheme} image URLs are not supported; send the image inline as a "
                         "base64 data URI (data:image/png;base64,...)", index=index)
    m = _DATA_URI.match(url)
    if not low.startswith("data:") or m is None:
        raise ImageError("invalid image input: expected a base64 data URI "
                         "(data:image/png;base64,...)", index=index)
    mime = (m.group("mime") or "").lower()
    if mime and not mime.startswith("image/"):
        raise ImageError(f"invalid image input: media type {mime} is not an image", index=index)
    return decode_base64_image(url[m.end():], index=index, max_bytes=max_bytes)


def _mb(n: int) -> str:
    return f"{n / (1 << 20):.1f} MB"


# -- sniffing -------------------------------------------------------------------------------------

def _unsupported_name(data: bytes) -> str | None:
    """The name of a recognisable image format stb_image cannot decode, else None."""
    if data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return "WebP"
    if data[:4] in (b"II*\x00", b"MM\x00*"):
        return "TIFF"
    if data[4:8] == b"ftyp" and data[8:12] in (b"heic", b"heix", b"mif1", b"msf1", b"hevc"):
        return "HEIC"
    if data[4:8] == b"ftyp" and data[8:12] in (b"avif", b"avis"):
        return "AVIF"
    if data[:4] == b"\x00\x00\x01\x00":
        return "ICO"
    if data[:12] == b"\x00\x00\x00\x0cjP  \r\n\x87\n" or data[:4] == b"\xff\x4f\xff\x51":
        return "JPEG 2000"
    if data[:2] == b"\xff\x0a":
        return "JPEG XL"
    head = data[:256].lstrip().lower()
    if head.startswith(b"<svg") or (head.startswith(b"<?xml") and b"<svg" in data[:4096].lower()):
        return "SVG"
    return None


def _png(data: bytes) -> tuple[int, int]:
    if len(data) < 24 or data[12:16] != b"IHDR":
        raise ValueError("truncated PNG header")
    return struct.unpack(">II", data[16:24])


def _gif(data: bytes) -> tuple[int, int]:
    if len(data) < 10:
        raise ValueError("truncated GIF header")
    return struct.unpack("<HH", data[6:10])


def _bmp(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise ValueError("truncated BMP header")
    (dib,) = struct.unpack("<I", data[14:18])
    if dib == 12:
        w, h = struct.unpack("<hh", data[18:22])
    else:
        w, h = struct.unpack("<ii", data[18:26])
    return abs(w), abs(h)


# SOF markers stb_image decodes: baseline, extended sequential, progressive (Huffman coded)
_JPEG_SOF_OK = {0xC0, 0xC1, 0xC2}
_JPEG_SOF_OTHER = {0xC3, 0xC5, 0xC6, 0xC7, 0xC9, 0xCA, 0xCB, 0xCD, 0xCE, 0xCF}


def _jpeg(data: bytes) -> tuple[int, int]:
    i, n = 2, len(data)
    while i + 4 <= n:
        if data[i] != 0xFF:
            raise ValueError("corrupt JPEG marker structure")
        marker = data[i + 1]
        if marker == 0xFF:          # fill byte
            i += 1
            continue
        if marker in (0xD8, 0x01) or 0xD0 <= marker <= 0xD7:
            i += 2
            continue
        if marker in (0xD9, 0xDA):  # end of image / start of scan before any frame header
            break
        (length,) = struct.unpack(">H", data[i + 2:i + 4])
        if marker in _JPEG_SOF_OK or marker in _JPEG_SOF_OTHER:
            if i + 9 > n:
                break
            h, w = struct.unpack(">HH", data[i + 5:i + 9])
            if marker in _JPEG_SOF_OTHER:
                kind = "lossless" if marker in (0xC3, 0xC7, 0xCB, 0xCF) else "arithmetic-coded"
                raise _Unsupported(f"{kind} JPEG")
            return w, h
        i += 2 + length
    raise ValueError("truncated JPEG: no frame header")


class _Unsupported(Exception):
    pass


def sniff_image(data: bytes, *, index: int | None = None) -> ImageFacts:
    """Identify ``data`` by its magic bytes and read its dimensions from the header.

    Raises:
        ImageError: not an image, a format llama.cpp cannot decode (WebP, TIFF, HEIC, …),
            a truncated header, zero or too large dimensions.
    """
    if data[:8] == b"\x89PNG\r\n\x1a\n":
        fmt, reader = "png", _png
    elif data[:3] == b"\xff\xd8\xff":
        fmt, reader = "jpeg", _jpeg
    elif data[:6] in (b"GIF87a", b"GIF89a"):
        fmt, reader = "gif", _gif
    elif data[:2] == b"BM" and len(data) >= 18:
        fmt, reader = "bmp", _bmp
    else:
        other = _unsupported_name(data)
        if other:
            raise ImageError(f"unsupported image format {other}; send {_SUPPORTED_TEXT}",
                             index=index)
        raise ImageError(f"not an image (expected {_SUPPORTED_TEXT} data)", index=index)
    try:
        width, height = reader(data)
    except _Unsupported as e:
        raise ImageError(f"unsupported image format {e}; send {_SUPPORTED_TEXT}",
                         index=index) from None
    except (ValueError, struct.error) as e:
        raise ImageError(f"corrupt image: {e}", index=index) from None
    if width <= 0 or height <= 0:
        raise ImageError(f"corrupt image: {fmt.upper()} header says {width}x{height} pixels",
                         index=index)
    if width > MAX_IMAGE_SIDE or height > MAX_IMAGE_SIDE or width * height > MAX_IMAGE_PIXELS:
        raise ImageError(f"image is too large ({width}x{height} pixels; the limit is "
                         f"{MAX_IMAGE_SIDE} pixels a side and {MAX_IMAGE_PIXELS // 1_000_000} "
                         "megapixels)", index=index)
    return ImageFacts(format=fmt, width=width, height=height)


def check_image(data: bytes, *, index: int | None = None,
                max_bytes: int = MAX_IMAGE_BYTES) -> ImageFacts:
    """:func:`sniff_image` plus the byte-size limit, for bytes that did not come as base64."""
    if len(data) > max_bytes:
        raise ImageError(f"image is too large ({_mb(len(data))}; the limit is {_mb(max_bytes)})",
                         index=index)
    if not data:
        raise ImageError("empty image data", index=index)
    return sniff_image(data, index=index)


# -- prompt markers ------------------------------------------------------------------------------

def split_image_tags(prompt: str, images: Sequence[bytes]) -> list[Part]:
    """Split a rendered prompt at Ollama's ``[img-N]`` tags: text (str) and image (bytes) parts.

    ``images`` is every image of the conversation in order (the model's MESSAGE images first,
    then the request's); ``[img-N]`` is ``images[N]``. An image may appear more than once;
    images no tag names (their message fell to context truncation) are left out. A prompt with
    images and no tag at all (``raw`` generate) gets them all at its start. Empty text parts
    are dropped.

    Raises:
        ImageError: a tag names an image that does not exist (Ollama: "invalid image index").
    """
    parts: list[Part] = []
    pos = 0
    tags = list(IMAGE_TAG.finditer(prompt))
    if not tags and images:
        parts.extend(images)
    for m in tags:
        n = int(m.group(1))
        if n >= len(images):
            raise ImageError(f"invalid image index: {n}")
        if m.start() > pos:
            parts.append(prompt[pos:m.start()])
        parts.append(images[n])
        pos = m.end()
    if pos < len(prompt):
        parts.append(prompt[pos:])
    return parts


def to_mtmd_prompt(prompt: str, images: Sequence[bytes], *,
                   marker: str = MTMD_MARKER) -> tuple[str, list[bytes]]:
    """The ``mtmd_tokenize`` form of :func:`split_image_tags`: the prompt with each ``[img-N]``
    replaced by ``marker`` and the images in marker order. Prefer :meth:`VisionContext.tokenize`
    with the parts: with this form a marker typed by the user is taken for an image."""
    text: list[str] = []
    ordered: list[bytes] = []
    for p in split_image_tags(prompt, images):
        if isinstance(p, bytes):
            text.append(marker)
            ordered.append(p)
        else:
            text.append(p)
    return "".join(text), ordered


# -- llama.cpp (mtmd) ----------------------------------------------------------------------------

@dataclass(frozen=True)
class ChunkInfo:
    """One tokenized chunk: ``kind`` "text" (with its tokens) or "image" (``n_tokens``
    embeddings, ``n_pos`` positions; ``id`` is the sha256 of the image bytes)."""

    kind: str
    n_tokens: int
    n_pos: int
    tokens: tuple[int, ...] = ()
    id: str = ""


@dataclass
class EvalResult:
    n_past: int      # the sequence's next position
    n_tokens: int    # prompt tokens (text tokens plus image embeddings)
    n_images: int
    pending_token: int | None = None   # hold_last: the prompt's last token, not yet decoded


@dataclass
class MediaPrompt:
    """Tokenized text and images (``mtmd_input_chunks``); free with :meth:`close`."""

    _chunks: Any
    _lib: Any
    chunks: list[ChunkInfo] = field(default_factory=list)

    @property
    def n_tokens(self) -> int:
        return sum(c.n_tokens for c in self.chunks)

    @property
    def n_pos(self) -> int:
        """KV positions the prompt takes (what to check against the context size)."""
        return sum(c.n_pos for c in self.chunks)

    @property
    def n_images(self) -> int:
        return sum(1 for c in self.chunks if c.kind == "image")

    def close(self) -> None:
        if self._chunks:
            self._lib.mtmd_input_chunks_free(self._chunks)
            self._chunks = None

    def __enter__(self) -> MediaPrompt:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()


def _grey_png(width: int, height: int) -> bytes:
    import zlib

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    raw = (b"\x00" + b"\x80" * width) * height
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 0, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw)) + chunk(b"IEND", b""))


_log_callback: Any = None


def _route_logs(mtmd: Any) -> None:
    """mtmd logs every encode at INFO on stderr; send it to this module's logger instead."""
    global _log_callback  # noqa: PLW0603 (llama.cpp's log hook is process-wide)
    if _log_callback is not None:
        return
    import llama_cpp

    levels = {2: logging.DEBUG, 3: logging.WARNING, 4: logging.ERROR}  # ggml_log_level

    @llama_cpp.llama_log_callback
    def _cb(level: int, text: bytes, _user: Any) -> None:
        msg = text.decode("utf-8", "replace").rstrip()
        if msg:
            logger.log(levels.get(level, logging.DEBUG), "mtmd: %s", msg)

    _log_callback = _cb
    for setter in ("mtmd_log_set", "mtmd_helper_log_set"):
        fn = getattr(mtmd, setter, None)
        if fn is not None:
            fn(_cb, ctypes.c_void_p())


class VisionContext:
    """An ``mtmd`` context: a projector (mmproj GGUF) bound to a loaded language model.

    Not thread-safe: create, use and close it on the thread that owns the ``llama_context``
    it evaluates into (the runner's decode loop). ``n_threads`` drives the image encoder on
    CPU; ``use_gpu`` puts the encoder on the GPU llama.cpp picked for the model.

    Args:
        mmproj: the projector GGUF (``ModelInfo.projectors[0]``).
        model: the ``llama_model`` pointer the text model was loaded as.
        n_threads: threads for the image encoder (the runner's ``n_threads``).
        use_gpu: offload the encoder (when the model is offloaded: ``num_gpu != 0``).
        warmup: run one encode at load (llama.cpp's default; it sizes the compute buffers).
        image_max_tokens: cap for projectors with dynamic resolution (-1: the model's).
    """

    def __init__(self, mmproj: str | Path, model: Any, *, n_threads: int = 4,
                 use_gpu: bool = False, warmup: bool = True, image_max_tokens: int = -1) -> None:
        from llama_cpp import mtmd_cpp as mtmd

        self._lib = mtmd
        _route_logs(mtmd)
        params = mtmd.mtmd_context_params_default()
        params.use_gpu = bool(use_gpu)
        params.n_threads = int(n_threads)
        params.print_timings = False
        params.warmup = bool(warmup)
        params.image_max_tokens = int(image_max_tokens)
        self._ctx = mtmd.mtmd_init_from_file(str(mmproj).encode(), model, params)
        if not self._ctx:
            # the file name is ours (a blob path): keep it out of the message
            raise EngineError("cannot load the model's projector (mmproj): llama.cpp refused "
                              "it (unsupported projector type, or it does not match the model)")
        if not mtmd.mtmd_support_vision(self._ctx):
            self.close()
            raise EngineError("the model's projector has no vision encoder (audio only?)")
        self.marker = (mtmd.mtmd_default_marker() or MTMD_MARKER.encode()).decode()
        self._model = model
        self._tokens_per_image: int | None = None

    # lifecycle
    def close(self) -> None:
        if getattr(self, "_ctx", None):
            self._lib.mtmd_free(self._ctx)
            self._ctx = None

    def __enter__(self) -> VisionContext:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __del__(self) -> None:
        self.close()

    @property
    def uses_non_causal(self) -> bool:
        """Whether image embeddings are decoded with non-causal attention (gemma3): the
        helper flips ``llama_set_causal_attn`` around the image batch, for the whole context."""
        return bool(self._lib.mtmd_decode_use_non_causal(self._ctx, None))

    @property
    def uses_mrope(self) -> bool:
        """M-RoPE models (qwen2-vl …) give image tokens 2-D positions: ``n_pos`` < ``n_tokens``."""
        return bool(self._lib.mtmd_decode_use_mrope(self._ctx))

    @property
    def tokens_per_image(self) -> int:
        """Embeddings one 512x512 picture becomes (fixed-size projectors: every picture), for
        the prompt builder's context budget (``chat_prompt(image_tokens=…)``)."""
        if self._tokens_per_image is None:
            with self.tokenize([_grey_png(512, 512)]) as p:
                self._tokens_per_image = p.n_tokens
        return self._tokens_per_image

    # images
    def _bitmap(self, data: bytes, index: int) -> Any:
        check_image(data, index=index)
        mtmd = self._lib
        buf = (ctypes.c_uint8 * len(data)).from_buffer_copy(data)
        opt = mtmd.mtmd_helper_init_opt_default()
        # A buffer stb_image cannot decode falls through to ffmpeg when libmtmd was built with
        # video support: point it at a folder that cannot hold an ffmpeg, so a corrupt image
        # never starts a process.
        opt.video_params.ffmpeg_bin_dir = b"/dev/null"
        wrapped = mtmd.mtmd_helper_bitmap_init_from_buf_wrapper(self._ctx, buf, len(data), False,
                                                                opt)
        if getattr(wrapped, "video_ctx", None):
            mtmd.mtmd_helper_video_free(wrapped.video_ctx)
            if wrapped.bitmap:
                mtmd.mtmd_bitmap_free(wrapped.bitmap)
            raise ImageError("could not decode the image (corrupt or truncated data)", index=index)
        if not wrapped.bitmap:
            raise ImageError("could not decode the image (corrupt or truncated data)", index=index)
        return wrapped.bitmap

    def tokenize(self, parts: Sequence[Part], *, add_special: bool = False) -> MediaPrompt:
        """Tokenize text (str) and image (bytes) parts in order into chunks.

        Text is tokenized with special tokens parsed (the template's ``<|im_start|>`` …), as
        the text-only path does; ``add_special`` adds the model's BOS when its vocab asks for
        one (pass False when the rendered prompt already starts with it).

        Raises:
            ImageError: an image that is not decodable (the message names it: ``image 2: …``).
            EngineError: mtmd refused the input (preprocessing failed).
        """
        mtmd = self._lib
        keep: list[Any] = []
        structs: list[Any] = []
        bitmaps: list[Any] = []
        n_image = 0
        try:
            for p in parts:
                if isinstance(p, (bytes, bytearray, memoryview)):
                    bm = self._bitmap(bytes(p), n_image)
                    n_image += 1
                    bitmaps.append(bm)
                    structs.append(mtmd.mtmd_input_part(text=None, bitmap=bm))
                elif p:
                    raw = p.encode("utf-8")
                    t = mtmd.mtmd_input_text(text=raw, text_len=len(raw), add_special=False,
                                             parse_special=True)
                    keep += [raw, t]
                    structs.append(mtmd.mtmd_input_part(text=ctypes.pointer(t), bitmap=None))
            if not structs:
                raise EngineError("empty prompt")
            array = (ctypes.POINTER(mtmd.mtmd_input_part) * len(structs))(
                *[ctypes.pointer(s) for s in structs])
            chunks = mtmd.mtmd_input_chunks_init()
            rc = mtmd.mtmd_tokenize_from_parts(self._ctx, chunks, array, len(structs),
                                               bool(add_special))
            if rc != 0:
                mtmd.mtmd_input_chunks_free(chunks)
                raise EngineError(f"cannot tokenize the prompt's images (mtmd error {rc})")
        finally:
            for bm in bitmaps:   # the chunks hold their own copy of the pixels
                mtmd.mtmd_bitmap_free(bm)
        return MediaPrompt(_chunks=chunks, _lib=mtmd, chunks=self._describe(chunks))

    def tokenize_marked(self, prompt: str, images: Sequence[bytes], *,
                        add_special: bool = False) -> MediaPrompt:
        """Tokenize text carrying ``self.marker`` once per image (``mtmd_tokenize``'s form)."""
        parts: list[Part] = []
        pieces = prompt.split(self.marker)
        if len(pieces) - 1 != len(images):
            raise ImageError(f"the prompt has {len(pieces) - 1} image markers for "
                             f"{len(images)} images")
        for i, text in enumerate(pieces):
            parts.append(text)
            if i < len(images):
                parts.append(images[i])
        return self.tokenize(parts, add_special=add_special)

    def _describe(self, chunks: Any) -> list[ChunkInfo]:
        mtmd = self._lib
        out = []
        for i in range(mtmd.mtmd_input_chunks_size(chunks)):
            c = mtmd.mtmd_input_chunks_get(chunks, i)
            kind = mtmd.mtmd_input_chunk_get_type(c)
            n_tokens = int(mtmd.mtmd_input_chunk_get_n_tokens(c))
            n_pos = int(mtmd.mtmd_input_chunk_get_n_pos(c))
            if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_TEXT:
                n = ctypes.c_size_t(0)
                ptr = mtmd.mtmd_input_chunk_get_tokens_text(c, ctypes.byref(n))
                tokens = tuple(ptr[j] for j in range(n.value)) if ptr else ()
                out.append(ChunkInfo("text", n_tokens, n_pos, tokens=tokens))
            else:
                cid = mtmd.mtmd_input_chunk_get_id(c)
                out.append(ChunkInfo("image" if kind == mtmd.MTMD_INPUT_CHUNK_TYPE_IMAGE
                                     else "audio", n_tokens, n_pos,
                                     id=cid.decode() if cid else ""))
        return out

    def eval(self, lctx: Any, prompt: MediaPrompt, *, seq_id: int, n_past: int, n_batch: int,
             logits_last: bool = True, hold_last: bool = False) -> EvalResult:
        """Decode ``prompt`` into sequence ``seq_id`` of ``lctx`` from position ``n_past``.

        Text chunks go in ``n_batch``-token batches, image chunks are encoded by the projector
        and their embeddings decoded. With ``logits_last`` the last text token's logits are
        kept, so ``llama_sampler_sample(smpl, lctx, -1)`` samples the first answer token (do
        it before the next ``llama_decode``). With ``hold_last`` the prompt's last token is
        not decoded: it comes back as ``pending_token`` for the caller's next shared batch (at
        position ``n_past``, logits on), like any sequence's next input token.
        On failure the positions this call wrote are removed from the sequence.

        Raises:
            EngineError: llama.cpp failed (1: no KV room — check ``prompt.n_pos`` first).
        """
        import llama_cpp

        if not prompt._chunks:
            raise EngineError("the prompt was already freed")
        mtmd = self._lib
        last = prompt.chunks[-1] if prompt.chunks else None
        hold = hold_last and last is not None and last.kind == "text" and last.n_tokens > 0
        pos = n_past
        rc = 0
        if not hold:
            new_past = llama_cpp.llama_pos(n_past)
            rc = mtmd.mtmd_helper_eval_chunks(self._ctx, lctx, prompt._chunks, n_past, seq_id,
                                              n_batch, bool(logits_last), ctypes.byref(new_past))
            pos = int(new_past.value)
        else:
            for i in range(len(prompt.chunks) - 1):
                new_past = llama_cpp.llama_pos(pos)
                rc = mtmd.mtmd_helper_eval_chunk_single(
                    self._ctx, lctx, mtmd.mtmd_input_chunks_get(prompt._chunks, i), pos, seq_id,
                    n_batch, False, ctypes.byref(new_past))
                if rc != 0:
                    break
                pos = int(new_past.value)
            if rc == 0:
                rc = _decode_tokens(lctx, last.tokens[:-1], pos=pos, seq_id=seq_id,  # type: ignore[union-attr]
                                    n_batch=n_batch)
                pos += last.n_tokens - 1  # type: ignore[union-attr]
        if rc != 0:
            mem = llama_cpp.llama_get_memory(lctx)
            llama_cpp.llama_memory_seq_rm(mem, seq_id, n_past, -1)
            what = "the context is full" if rc == 1 else f"llama.cpp error {rc}"
            raise EngineError(f"cannot evaluate the prompt with its images: {what}")
        return EvalResult(n_past=pos, n_tokens=prompt.n_tokens, n_images=prompt.n_images,
                          pending_token=last.tokens[-1] if hold else None)  # type: ignore[union-attr]

    def encode(self, prompt: MediaPrompt) -> list[Any]:
        """Run the projector over every image of ``prompt``: the slow half of :meth:`eval`,
        which needs no ``llama_context``, so a runner does it on a worker thread while its
        other sequences keep decoding (the projector has its own context; one encode at a
        time). Returns, per chunk, the image's embeddings (a float array of ``n_tokens`` x
        the model's input width) or None for a text chunk, for :meth:`eval_encoded`.

        Raises:
            EngineError: the projector failed.
        """
        import llama_cpp

        if not prompt._chunks:
            raise EngineError("the prompt was already freed")
        mtmd = self._lib
        width = int(llama_cpp.llama_model_n_embd_inp(self._model))
        out: list[Any] = []
        for i, info in enumerate(prompt.chunks):
            if info.kind == "text":
                out.append(None)
                continue
            rc = mtmd.mtmd_encode_chunk(self._ctx, mtmd.mtmd_input_chunks_get(prompt._chunks, i))
            if rc != 0:
                raise EngineError(f"cannot encode image {info.id[:12]}: llama.cpp error {rc}")
            n = info.n_tokens * width
            embd = (ctypes.c_float * n)()
            ctypes.memmove(embd, mtmd.mtmd_get_output_embd(self._ctx), n * ctypes.sizeof(ctypes.c_float))
            out.append(embd)
        return out

    def eval_encoded(self, lctx: Any, prompt: MediaPrompt, embeddings: Sequence[Any], *,
                     seq_id: int, n_past: int, n_batch: int) -> EvalResult:
        """The fast half of :meth:`eval`: decode ``prompt`` into sequence ``seq_id`` of
        ``lctx`` from ``n_past``, its images from :meth:`encode`'s ``embeddings``; the last
        token's logits are kept for sampling. On failure the positions written are removed.

        Raises:
            EngineError: llama.cpp failed (1: no KV room — check ``prompt.n_pos`` first).
        """
        import llama_cpp

        if not prompt._chunks:
            raise EngineError("the prompt was already freed")
        mtmd = self._lib
        pos = n_past
        rc = 0
        last = len(prompt.chunks) - 1
        for i, embd in enumerate(embeddings):
            chunk = mtmd.mtmd_input_chunks_get(prompt._chunks, i)
            new_past = llama_cpp.llama_pos(pos)
            if embd is None:
                rc = mtmd.mtmd_helper_eval_chunk_single(self._ctx, lctx, chunk, pos, seq_id,
                                                        n_batch, i == last, ctypes.byref(new_past))
            else:
                no_callback = mtmd.mtmd_helper_post_decode_callback()      # a NULL function pointer
                rc = mtmd.mtmd_helper_decode_image_chunk(self._ctx, lctx, chunk, embd, pos, seq_id,
                                                         n_batch, ctypes.byref(new_past), no_callback,
                                                         None)
            if rc != 0:
                break
            pos = int(new_past.value)
        if rc != 0:
            llama_cpp.llama_memory_seq_rm(llama_cpp.llama_get_memory(lctx), seq_id, n_past, -1)
            what = "the context is full" if rc == 1 else f"llama.cpp error {rc}"
            raise EngineError(f"cannot evaluate the prompt with its images: {what}")
        return EvalResult(n_past=pos, n_tokens=prompt.n_tokens, n_images=prompt.n_images,
                          pending_token=None)

    def eval_parts(self, lctx: Any, parts: Sequence[Part], *, seq_id: int, n_past: int,
                   n_batch: int, add_special: bool = False, logits_last: bool = True,
                   hold_last: bool = False) -> EvalResult:
        """:meth:`tokenize` then :meth:`eval`, freeing the chunks."""
        with self.tokenize(parts, add_special=add_special) as prompt:
            return self.eval(lctx, prompt, seq_id=seq_id, n_past=n_past, n_batch=n_batch,
                             logits_last=logits_last, hold_last=hold_last)


def _decode_tokens(lctx: Any, tokens: Sequence[int], *, pos: int, seq_id: int,
                   n_batch: int) -> int:
    """Decode ``tokens`` into ``seq_id`` from ``pos`` without logits; llama_decode's status."""
    import llama_cpp

    if not tokens:
        return 0
    batch = llama_cpp.llama_batch_init(min(n_batch, len(tokens)), 0, 1)
    try:
        for start in range(0, len(tokens), n_batch):
            part = tokens[start:start + n_batch]
            batch.n_tokens = len(part)
            for i, tok in enumerate(part):
                batch.token[i], batch.pos[i], batch.n_seq_id[i] = tok, pos + start + i, 1
                batch.seq_id[i][0], batch.logits[i] = seq_id, 0
            rc = llama_cpp.llama_decode(lctx, batch)
            if rc != 0:
                return int(rc)
        return 0
    finally:
        llama_cpp.llama_batch_free(batch)
