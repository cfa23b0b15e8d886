"""Modbus register codec shared by the edge (decode) and the simulators (encode). Pure, no I/O.

Conventions, as device manuals state them:
- ``word_order: big`` means the most significant 16-bit register comes first (ABCD);
  ``little`` reverses the registers (CDAB for a 32-bit value).
- ``byte_order: big`` means the high byte of each register is sent first; ``little`` swaps the two
  bytes inside every register (BADC, or DCBA with little word order).
"""

from __future__ import annotations

import math
import struct
from enum import StrEnum


class RawType(StrEnum):
    int16 = "int16"
    uint16 = "uint16"
    int32 = "int32"
    uint32 = "uint32"
    int64 = "int64"
    uint64 = "uint64"
    float32 = "float32"
    float64 = "float64"
    bool = "bool"
    string = "string"


class Order(StrEnum):
    big = "big"
    little = "little"


#: struct code and register count of each fixed-size type
STRUCT_CODES: dict[RawType, tuple[str, int]] = {
    RawType.int16: ("h", 1),
    RawType.uint16: ("H", 1),
    RawType.int32: ("i", 2),
    RawType.uint32: ("I", 2),
    RawType.int64: ("q", 4),
    RawType.uint64: ("Q", 4),
    RawType.float32: ("f", 2),
    RawType.float64: ("d", 4),
}


class DecodeError(ValueError):
    """Registers that cannot be a value of the declared type (wrong count, not finite, ...)."""


def register_count(raw_type: RawType, length: int | None = None) -> int:
    """How many 16-bit registers one value occupies (``length`` is the string's registers)."""
    if raw_type is RawType.bool:
        return 1
    if raw_type is RawType.string:
        if not length:
            raise ValueError("a string needs its length in registers")
        return length
    return STRUCT_CODES[raw_type][1]


def _reorder(words: list[int], byte_order: Order, word_order: Order) -> list[int]:
    if word_order is Order.little:
        words = words[::-1]
    if byte_order is Order.little:
        words = [((w & 0xFF) << 8) | (w >> 8) for w in words]
    return words


def byte_positions(raw_type: RawType, byte_order: Order, word_order: Order) -> list[int]:
    """Where each byte of the big-endian value sits in its registers as they go on the wire:
    [0, 1, 2, 3] for ABCD, [3, 2, 1, 0] for DCBA, [2, 3, 0, 1] for CDAB, [1, 0, 3, 2] for BADC."""
    words = STRUCT_CODES[raw_type][1]
    order = range(words - 1, -1, -1) if word_order is Order.little else range(words)
    inner = (1, 0) if byte_order is Order.little else (0, 1)
    return [2 * w + b for w in order for b in inner]


def int_range(raw_type: RawType) -> tuple[int, int]:
    """The smallest and largest value of an integer type (a device saturates at them)."""
    code, count = STRUCT_CODES[raw_type]
    bits = count * 16
    return (-(1 << (bits - 1)), (1 << (bits - 1)) - 1) if code.islower() else (0, (1 << bits) - 1)


def decode(
    registers: list[int],
    raw_type: RawType,
    byte_order: Order = Order.big,
    word_order: Order = Order.big,
) -> int | float | str:
    """Registers as read from the wire -> the raw value (before scale and offset)."""
    if raw_type is RawType.bool:
        raise ValueError("bool values come from coils or discrete inputs, not registers")
    expected = len(registers) if raw_type is RawType.string else STRUCT_CODES[raw_type][1]
    if len(registers) != expected or not registers:
        raise DecodeError(f"{raw_type} needs {expected} registers, got {len(registers)}")
    if any(not 0 <= r <= 0xFFFF for r in registers):
        raise DecodeError(f"register values must be 0..65535, got {registers}")
    words = _reorder(list(registers), byte_order, word_order)
    data = b"".join(w.to_bytes(2, "big") for w in words)
    if raw_type is RawType.string:
        return data.rstrip(b"\x00").decode("utf-8", errors="replace")
    (value,) = struct.unpack(">" + STRUCT_CODES[raw_type][0], data)
    if isinstance(value, float) and not math.isfinite(value):
        raise DecodeError(f"{raw_type} registers {registers} decode to {value}, not a reading")
    return value


def encode(
    value: int | float | str,
    raw_type: RawType,
    byte_order: Order = Order.big,
    word_order: Order = Order.big,
    length: int | None = None,
) -> list[int]:
    """The raw value -> registers as a device would put them on the wire."""
    if raw_type is RawType.bool:
        raise ValueError("bool values live in coils or discrete inputs, not registers")
    if raw_type is RawType.string:
        count = register_count(raw_type, length)
        data = str(value).encode()[: count * 2].ljust(count * 2, b"\x00")
    else:
        code, count = STRUCT_CODES[raw_type]
        if code in "fd":
            data = struct.pack(">" + code, float(value))
        else:
            # a device saturates rather than wrapping; so does the simulator
            lo, hi = int_range(raw_type)
            # ints stay ints: a float would drop the low bits of 64-bit counters
            whole = value if isinstance(value, int) else round(float(value))
            data = struct.pack(">" + code, min(hi, max(lo, whole)))
    words = [int.from_bytes(data[i : i + 2], "big") for i in range(0, len(data), 2)]
    # _reorder is its own inverse for these two independent swaps
    return _reorder(words, byte_order, word_order)


def to_engineering(raw: int | float, scale: float = 1.0, offset: float = 0.0) -> float:
    return raw * scale + offset


def to_raw(value: float, scale: float = 1.0, offset: float = 0.0) -> float:
    return (value - offset) / scale
