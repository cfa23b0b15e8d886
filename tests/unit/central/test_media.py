"""Upload checks: the type comes from the bytes, each kind has its types and its size limit, and a
declared type that disagrees with the content is refused."""

from __future__ import annotations

import struct
import zlib

import pytest

from central.domain.media import (
    HEIC,
    HEIF,
    JPEG,
    MAX_BYTES,
    MAX_UPLOAD,
    MIB,
    PDF,
    PNG,
    WEBP,
    MediaRejected,
    check_upload,
    sniff,
)


def _chunk(kind: bytes, body: bytes) -> bytes:
    return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))


def tiny_png() -> bytes:
    """A real 1x1 black greyscale PNG."""
    ihdr = struct.pack(">IIBBBBB", 1, 1, 8, 0, 0, 0, 0)
    pixels = zlib.compress(b"\x00\x00")  # filter byte + one grey pixel
    return (
        b"\x89PNG\r\n\x1a\n"
        + _chunk(b"IHDR", ihdr)
        + _chunk(b"IDAT", pixels)
        + _chunk(b"IEND", b"")
    )


def jpeg_header() -> bytes:
    """SOI, then a JFIF APP0 segment, then EOI."""
    app0 = b"JFIF\x00" + struct.pack(">BBBHHBB", 1, 1, 0, 1, 1, 0, 0)
    return b"\xff\xd8" + b"\xff\xe0" + struct.pack(">H", len(app0) + 2) + app0 + b"\xff\xd9"


def webp_header() -> bytes:
    vp8l = b"VP8L" + struct.pack("<I", 5) + b"\x2f\x00\x00\x00\x00" + b"\x00"  # padded to even
    return b"RIFF" + struct.pack("<I", 4 + len(vp8l)) + b"WEBP" + vp8l


def ftyp(major: bytes, *compatible: bytes) -> bytes:
    body = major + b"\x00\x00\x00\x00" + b"".join(compatible)
    return struct.pack(">I", 8 + len(body)) + b"ftyp" + body


def pdf_bytes() -> bytes:
    return b"%PDF-1.7\n%\xe2\xe3\xcf\xd3\n1 0 obj\n<< /Type /Catalog >>\nendobj\ntrailer\n%%EOF\n"


@pytest.mark.parametrize(
    ("data", "expected"),
    [
        (tiny_png(), PNG),
        (jpeg_header(), JPEG),
        (webp_header(), WEBP),
        (ftyp(b"heic", b"mif1", b"heic"), HEIC),
        (ftyp(b"heix", b"mif1"), HEIC),
        (ftyp(b"mif1", b"heic"), HEIF),
        (pdf_bytes(), PDF),
        (ftyp(b"avif", b"mif1", b"miaf"), None),  # AVIF lists mif1 too: not taken for HEIF
        (ftyp(b"isom", b"mp41"), None),  # an MP4 video
        (b"<svg xmlns='http://www.w3.org/2000/svg'/>", None),
        (b"GIF89a\x01\x00\x01\x00", None),
        (b"RIFF\x00\x00\x00\x00WAVE", None),
        (b"\xff\xd8", None),  # too short to be a JPEG
    ],
)
def test_sniff_reads_the_magic_bytes(data: bytes, expected: str | None) -> None:
    assert sniff(data) == expected


def test_the_png_fixture_is_a_real_png() -> None:
    """Walk the chunks: each CRC checks, and the image data inflates to one filtered pixel."""
    data, pos, seen = tiny_png(), 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        (crc,) = struct.unpack(">I", data[pos + 8 + length : pos + 12 + length])
        assert crc == zlib.crc32(kind + body)
        if kind == b"IDAT":
            assert zlib.decompress(body) == b"\x00\x00"
        seen.append(kind)
        pos += 12 + length
    assert seen == [b"IHDR", b"IDAT", b"IEND"]


@pytest.mark.parametrize(
    ("kind", "data", "expected"),
    [
        ("photo", jpeg_header(), JPEG),
        ("photo", tiny_png(), PNG),
        ("photo", webp_header(), WEBP),
        ("photo", ftyp(b"heic", b"mif1"), HEIC),
        ("signature", tiny_png(), PNG),
        ("signature", jpeg_header(), JPEG),
        ("signature", webp_header(), WEBP),
        ("document", pdf_bytes(), PDF),
        ("document", jpeg_header(), JPEG),
        ("document", tiny_png(), PNG),
    ],
)
def test_allowed_types_are_accepted_as_sniffed(kind: str, data: bytes, expected: str) -> None:
    assert check_upload(kind, data, None) == expected


@pytest.mark.parametrize(
    ("kind", "data", "named"),
    [
        ("signature", pdf_bytes(), "the file is PDF; a signature must be one of: JPEG, PNG, WebP"),
        ("signature", ftyp(b"heic"), "the file is HEIC"),
        ("photo", pdf_bytes(), "a photo must be one of: HEIC, HEIF, JPEG, PNG, WebP"),
        ("document", webp_header(), "the file is WebP; a document"),
        ("document", ftyp(b"heic"), "the file is HEIC; a document"),
    ],
)
def test_types_not_allowed_for_the_kind_are_refused(kind: str, data: bytes, named: str) -> None:
    with pytest.raises(MediaRejected, match=named):
        check_upload(kind, data, None)


def test_unrecognised_content_is_refused_whatever_it_claims() -> None:
    svg = b"<svg xmlns='http://www.w3.org/2000/svg' onload='alert(1)'/>"
    with pytest.raises(MediaRejected, match="not a recognised type"):
        check_upload("photo", svg, "image/png")


def test_empty_file_is_refused() -> None:
    with pytest.raises(MediaRejected, match="empty"):
        check_upload("photo", b"", "image/jpeg")


def test_limits() -> None:
    assert MAX_BYTES == {"photo": 10 * MIB, "signature": 1 * MIB, "document": 20 * MIB}
    assert MAX_UPLOAD == 20 * MIB


@pytest.mark.parametrize("kind", ["photo", "signature", "document"])
def test_size_limit_is_inclusive(kind: str) -> None:
    limit = MAX_BYTES[kind]
    at_limit = jpeg_header() + b"\x00" * (limit - len(jpeg_header()))
    assert check_upload(kind, at_limit, None) == JPEG
    with pytest.raises(MediaRejected, match=f"a {kind} may be at most {limit // MIB} MiB"):
        check_upload(kind, at_limit + b"\x00", None)


def test_declared_type_must_agree_with_the_content() -> None:
    with pytest.raises(MediaRejected, match=r"sent as image/png but its content is JPEG"):
        check_upload("photo", jpeg_header(), "image/png")
    with pytest.raises(MediaRejected, match="sent as image/jpeg but its content is PDF"):
        check_upload("document", pdf_bytes(), "image/jpeg")


@pytest.mark.parametrize(
    ("data", "declared"),
    [
        (jpeg_header(), "image/jpeg"),
        (jpeg_header(), "IMAGE/JPG"),  # case and common misspellings
        (jpeg_header(), "image/pjpeg"),
        (tiny_png(), "image/png; charset=binary"),  # parameters ignored
        (pdf_bytes(), "application/x-pdf"),
        (ftyp(b"heic"), "image/heif"),  # HEIC is a HEIF profile: either label is fine
        (ftyp(b"mif1"), "image/heic"),
        (tiny_png(), "application/octet-stream"),  # claims nothing
        (tiny_png(), ""),
        (tiny_png(), None),
    ],
)
def test_declared_types_that_agree_or_claim_nothing(data: bytes, declared: str | None) -> None:
    kind = "document" if data.startswith(b"%PDF") else "photo"
    assert check_upload(kind, data, declared) == sniff(data)


def test_unknown_kind_is_refused() -> None:
    with pytest.raises(MediaRejected, match="unknown kind 'video'"):
        check_upload("video", jpeg_header(), None)


def test_media_rejected_is_a_value_error() -> None:
    assert issubclass(MediaRejected, ValueError)
