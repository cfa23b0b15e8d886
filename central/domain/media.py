"""What an uploaded file really is, and whether a ticket may keep it. Pure: bytes in, a verdict out.

The type comes from the file's own magic bytes, never from the client's Content-Type or filename:
a declared type only has to agree with what the content is. Each kind of evidence has its own
size limit and its own allowed types.
"""

from __future__ import annotations

from typing import Final

JPEG: Final = "image/jpeg"
PNG: Final = "image/png"
WEBP: Final = "image/webp"
HEIC: Final = "image/heic"
HEIF: Final = "image/heif"
PDF: Final = "application/pdf"

MIB: Final = 1024 * 1024

KINDS: Final = ("photo", "signature", "document")

#: The largest upload each kind of evidence may be.
MAX_BYTES: dict[str, int] = {"photo": 10 * MIB, "signature": 1 * MIB, "document": 20 * MIB}
#: The largest upload of any kind (what a reader may buffer at most).
MAX_UPLOAD: int = max(MAX_BYTES.values())

#: The types each kind accepts. A signature is an image drawn on a phone; documents are PDFs or
#: scans; HEIC/HEIF is what iPhones take photos in.
ALLOWED: dict[str, frozenset[str]] = {
    "photo": frozenset({JPEG, PNG, WEBP, HEIC, HEIF}),
    "signature": frozenset({PNG, JPEG, WEBP}),
    "document": frozenset({PDF, JPEG, PNG}),
}

_NAMES: dict[str, str] = {
    JPEG: "JPEG",
    PNG: "PNG",
    WEBP: "WebP",
    HEIC: "HEIC",
    HEIF: "HEIF",
    PDF: "PDF",
}

# ISO-BMFF major brands of still HEIF images (sequences and AVIF are deliberately not here: AVIF
# files also list mif1 among their compatible brands, so only the major brand is trusted).
_HEIF_BRANDS: dict[bytes, str] = {b"heic": HEIC, b"heix": HEIC, b"mif1": HEIF}

# What clients send for the same thing: spellings that mean one canonical type.
_ALIASES: dict[str, str] = {
    "image/jpg": JPEG,
    "image/pjpeg": JPEG,
    "image/x-png": PNG,
    "image/heic-sequence": HEIC,
    "image/heif-sequence": HEIF,
    "application/x-pdf": PDF,
}
# Declared types that make no claim at all (a browser that does not know the extension).
_NO_CLAIM: frozenset[str] = frozenset({"", "application/octet-stream", "binary/octet-stream"})
# HEIC is a HEIF profile, and clients label either with either: treat the pair as one family.
_FAMILY: dict[str, str] = {HEIC: HEIF}


class MediaRejected(ValueError):
    """The upload may not be kept; the message says why, in words for the person uploading."""


def sniff(data: bytes) -> str | None:
    """The content type the bytes themselves say, or None for anything not recognised."""
    if data.startswith(b"\xff\xd8\xff"):
        return JPEG
    if data.startswith(b"\x89PNG\r\n\x1a\n"):
        return PNG
    if len(data) >= 12 and data[:4] == b"RIFF" and data[8:12] == b"WEBP":
        return WEBP
    if len(data) >= 12 and data[4:8] == b"ftyp":
        return _HEIF_BRANDS.get(data[8:12])
    if data.startswith(b"%PDF-"):
        return PDF
    return None


def _human_size(n: int) -> str:
    return f"{n // MIB} MiB" if n % MIB == 0 else f"{n} bytes"


def _canonical(declared: str) -> str:
    """'Image/JPG; charset=x' -> 'image/jpeg'."""
    base = declared.split(";", 1)[0].strip().lower()
    return _ALIASES.get(base, base)


def _names(types: frozenset[str]) -> str:
    return ", ".join(sorted({_NAMES[t] for t in types}))


def check_upload(kind: str, data: bytes, declared_type: str | None) -> str:
    """The sniffed content type of ``data`` if a ``kind`` may be this file, else MediaRejected.

    ``declared_type`` is what the client said (the part's Content-Type); None, empty or
    application/octet-stream claim nothing, anything else must name the type the bytes are.
    """
    if kind not in MAX_BYTES:
        raise MediaRejected(f"unknown kind {kind!r}: one of {', '.join(KINDS)}")
    if not data:
        raise MediaRejected("the file is empty")
    limit = MAX_BYTES[kind]
    if len(data) > limit:
        raise MediaRejected(
            f"the file is {len(data)} bytes; a {kind} may be at most {_human_size(limit)}"
        )
    actual = sniff(data)
    allowed = ALLOWED[kind]
    if actual is None:
        raise MediaRejected(
            f"the file is not a recognised type; a {kind} must be one of: {_names(allowed)}"
        )
    if actual not in allowed:
        raise MediaRejected(
            f"the file is {_NAMES[actual]}; a {kind} must be one of: {_names(allowed)}"
        )
    if declared_type is not None:
        declared = _canonical(declared_type)
        if declared not in _NO_CLAIM and _FAMILY.get(declared, declared) != _FAMILY.get(
            actual, actual
        ):
            raise MediaRejected(
                f"the file was sent as {declared} but its content is {_NAMES[actual]} ({actual})"
            )
    return actual
