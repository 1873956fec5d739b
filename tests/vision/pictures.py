"""Small real pictures written byte by byte (no imaging library): PNG and BMP decode with
llama.cpp's stb_image; the other formats' headers are enough for the sniffing tests."""
from __future__ import annotations

import struct
import zlib


def png(width: int = 64, height: int = 64, rgb: tuple[int, int, int] = (255, 0, 0)) -> bytes:
    """A solid-colour 8-bit RGB PNG."""
    row = b"\x00" + bytes(rgb) * width
    raw = row * height

    def chunk(kind: bytes, data: bytes) -> bytes:
        return (struct.pack(">I", len(data)) + kind + data
                + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IDAT", zlib.compress(raw))
            + chunk(b"IEND", b""))


def bmp(width: int = 16, height: int = 16, rgb: tuple[int, int, int] = (0, 0, 255)) -> bytes:
    """A solid-colour 24-bit BMP (rows bottom-up, padded to 4 bytes)."""
    row = bytes((rgb[2], rgb[1], rgb[0])) * width
    row += b"\x00" * (-len(row) % 4)
    pixels = row * height
    header = struct.pack("<2sIHHI", b"BM", 54 + len(pixels), 0, 0, 54)
    dib = struct.pack("<IiiHHIIiiII", 40, width, height, 1, 24, 0, len(pixels), 2835, 2835, 0, 0)
    return header + dib + pixels


def jpeg_header(width: int = 640, height: int = 480, sof: int = 0xC0) -> bytes:
    """SOI, an APP0 (JFIF) segment and a frame header: what sniffing reads of a JPEG."""
    app0 = b"\xff\xe0" + struct.pack(">H", 16) + b"JFIF\x00\x01\x01\x00\x00\x01\x00\x01\x00\x00"
    sof_seg = (bytes((0xFF, sof)) + struct.pack(">HBHHB", 17, 8, height, width, 3)
               + b"\x01\x22\x00\x02\x11\x01\x03\x11\x01")
    return b"\xff\xd8" + app0 + sof_seg + b"\xff\xd9"


def gif_header(width: int = 10, height: int = 20) -> bytes:
    return b"GIF89a" + struct.pack("<HH", width, height) + b"\x00\x00\x00" + b"\x3b"


def webp_header() -> bytes:
    return b"RIFF" + struct.pack("<I", 30) + b"WEBPVP8 " + b"\x00" * 22
