"""Image checks that run before llama.cpp sees anything: base64, data URIs, format sniffing,
size limits, and Ollama's ``[img-N]`` tags."""
from __future__ import annotations

import base64
import struct

import pytest

from runtime.errors import ImageError
from runtime.serve.vision import (
    MAX_IMAGE_BYTES,
    MTMD_MARKER,
    check_image,
    decode_base64_image,
    parse_data_uri,
    sniff_image,
    split_image_tags,
    to_mtmd_prompt,
)
from vision.pictures import bmp, gif_header, jpeg_header, png, webp_header


def b64(data: bytes) -> str:
    return base64.b64encode(data).decode()


def test_base64_round_trip_and_data_prefix_and_line_breaks():
    data = png(8, 8)
    assert decode_base64_image(b64(data)) == data
    assert decode_base64_image("data:image/png;base64," + b64(data)) == data
    wrapped = "\n".join(b64(data)[i:i + 76] for i in range(0, len(b64(data)), 76))
    assert decode_base64_image(wrapped) == data


@pytest.mark.parametrize("text, reason", [
    ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAAI", None),  # valid prefix of a PNG: decodes (sniffed later)
    ("iVBORw0KGgoAAAANSUhEUgAAAAgAAAA", "truncated"),
    ("iVBO=Rw0", "invalid base64 image data$"),   # padding in the middle: not "URL-safe"
    ("iVBOR=", "truncated"),
    ("not base64!", "invalid base64"),
    ("aGk_aGk-", "URL-safe"),
    ("", "empty"),
])
def test_bad_base64(text, reason):
    if reason is None:
        assert decode_base64_image(text).startswith(b"\x89PNG")
        return
    with pytest.raises(ImageError, match=reason) as e:
        decode_base64_image(text, index=1)
    assert str(e.value).startswith("image 2: ")


def test_not_a_string():
    with pytest.raises(ImageError, match="expected a base64 string, got int"):
        decode_base64_image(5)  # type: ignore[arg-type]


def test_size_limit_before_decoding():
    big = "A" * (4 * (MAX_IMAGE_BYTES // 3) + 400)
    with pytest.raises(ImageError, match=r"too large \(20\.0 MB; the limit is 20\.0 MB\)"):
        decode_base64_image(big)
    with pytest.raises(ImageError, match=r"the limit is 0\.0 MB"):
        decode_base64_image(b64(png(8, 8)), max_bytes=10)


@pytest.mark.parametrize("data, facts", [
    (png(33, 17), ("png", 33, 17)),
    (bmp(5, 7), ("bmp", 5, 7)),
    (jpeg_header(640, 480), ("jpeg", 640, 480)),
    (jpeg_header(800, 600, sof=0xC2), ("jpeg", 800, 600)),   # progressive: stb decodes it
    (gif_header(10, 20), ("gif", 10, 20)),
])
def test_sniff_supported(data, facts):
    f = sniff_image(data)
    assert (f.format, f.width, f.height) == facts


@pytest.mark.parametrize("data, message", [
    (webp_header(), "unsupported image format WebP; send PNG, JPEG, GIF or BMP"),
    (b"II*\x00" + b"\x00" * 20, "unsupported image format TIFF"),
    (b"\x00\x00\x00\x1cftypheic" + b"\x00" * 20, "unsupported image format HEIC"),
    (b"<?xml version='1.0'?><svg xmlns='x'/>", "unsupported image format SVG"),
    (jpeg_header(sof=0xC3), "unsupported image format lossless JPEG"),
    (jpeg_header(sof=0xC9), "unsupported image format arithmetic-coded JPEG"),
    (b"hello, this is text", "not an image"),
    (b"%PDF-1.7\n", "not an image"),
    (png()[:20], "corrupt image: truncated PNG header"),
    (b"\xff\xd8\xff\xe0\x00\x10JFIF", "corrupt image: truncated JPEG"),
    (png(1, 1)[:16] + struct.pack(">II", 0, 5) + png(1, 1)[24:], "0x5 pixels"),
    (png(1, 1)[:16] + struct.pack(">II", 60000, 60000) + png(1, 1)[24:],
     "too large (60000x60000 pixels"),
    (gif_header(9000, 9000), "too large"),
])
def test_sniff_refuses(data, message):
    with pytest.raises(ImageError, match=message.replace("(", r"\(")):
        sniff_image(data)


def test_check_image_limits():
    with pytest.raises(ImageError, match="empty image data"):
        check_image(b"")
    with pytest.raises(ImageError, match="too large"):
        check_image(png(8, 8), max_bytes=16)
    assert check_image(png(8, 8)).format == "png"


def test_data_uri():
    data = png(4, 4)
    assert parse_data_uri("data:image/png;base64," + b64(data)) == data
    assert parse_data_uri("data:image/jpeg;charset=x;base64," + b64(data)) == data
    assert parse_data_uri("DATA:IMAGE/PNG;BASE64," + b64(data)) == data
    with pytest.raises(ImageError, match="https image URLs are not supported; send the image "
                                         "inline as a base64 data URI"):
        parse_data_uri("https://example.com/cat.png")
    with pytest.raises(ImageError, match="expected a base64 data URI"):
        parse_data_uri("data:image/png," + b64(data))
    with pytest.raises(ImageError, match="media type text/plain is not an image"):
        parse_data_uri("data:text/plain;base64,aGk=")
    with pytest.raises(ImageError, match="must be a data URI string"):
        parse_data_uri({"url": "x"})
    with pytest.raises(ImageError, match="image 3: invalid base64"):
        parse_data_uri("data:image/png;base64,@@@@", index=2)


def test_split_image_tags_orders_repeats_and_drops_unnamed():
    a, b, c = b"A", b"B", b"C"
    assert split_image_tags("x[img-2]y[img-0][img-2]z", [a, b, c]) == ["x", c, "y", a, c, "z"]
    assert split_image_tags("[img-1]hello", [a, b]) == [b, "hello"]   # a fell to truncation
    assert split_image_tags("no tags", []) == ["no tags"]
    assert split_image_tags("raw prompt", [a, b]) == [a, b, "raw prompt"]
    with pytest.raises(ImageError, match="invalid image index: 3"):
        split_image_tags("[img-3]", [a])


def test_to_mtmd_prompt():
    text, images = to_mtmd_prompt("see [img-1] and [img-0]", [b"A", b"B"])
    assert text == f"see {MTMD_MARKER} and {MTMD_MARKER}"
    assert images == [b"B", b"A"]
