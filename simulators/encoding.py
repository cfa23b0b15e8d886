"""A device's registers from engineering values, compiled once per table. Pure.

The simulator answers every read by encoding each resource of the requested table; done value by
value through the generic codec (``fieldloop.registers.encode``) that is most of its cost. Here
each resource's struct, byte placement (byte and word order) and saturation range are worked
out once; a read is then one pack of the block, one ``pack`` per resource and one unpack back
to words. A test holds it to the generic codec.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable
from dataclasses import dataclass
from functools import lru_cache

from fieldloop.profiles import Order, Resource
from fieldloop.registers import (
    STRUCT_CODES,
    RawType,
    byte_positions,
    encode,
    int_range,
)


@lru_cache(maxsize=256)
def _words(count: int) -> struct.Struct:
    return struct.Struct(f">{count}H")


@dataclass(frozen=True, slots=True)
class _Slot:
    resource: Resource
    pack: Callable[[float], bytes] | None  # None: a string, through the generic codec
    where: tuple[int, ...] | None  # byte k of the packed value goes to byte where[k]; None: as is
    size: int  # bytes
    lo: float
    hi: float
    whole: bool  # an integer type: rounded, then saturated at lo..hi


def _flip(order: Order) -> Order:
    return Order.little if order is Order.big else Order.big


def _slot(r: Resource, swapped: bool) -> _Slot:
    assert r.type is not None
    bo, wo = (_flip(r.byte_order), _flip(r.word_order)) if swapped else (r.byte_order, r.word_order)
    if r.type is RawType.string:
        return _Slot(r, None, None, 2 * r.count, 0.0, 0.0, False)
    code, count = STRUCT_CODES[r.type]
    where = tuple(byte_positions(r.type, bo, wo))
    whole = code not in "fd"
    lo, hi = int_range(r.type) if whole else (-math.inf, math.inf)
    return _Slot(
        r,
        struct.Struct(">" + code).pack,
        None if where == tuple(range(2 * count)) else where,
        2 * count,
        lo,
        hi,
        whole,
    )


class TableEncoder:
    """The register resources of one table of a profile. ``swapped``: every resource with both
    its byte and its word order reversed (a device of another firmware, a wrong gateway)."""

    def __init__(self, resources: list[Resource], *, swapped: bool = False) -> None:
        self.swapped = swapped
        self._slots = [_slot(r, swapped) for r in resources]

    def fill(self, registers: list[int], start: int, value: Callable[[Resource], float]) -> None:
        """Write into ``registers`` (the words from address ``start``) every resource that lies
        wholly inside them, at ``value(resource)``; a value that cannot be encoded (not finite,
        too large for a float32) leaves its registers as they were."""
        n = len(registers)
        words = _words(n)
        buf = bytearray(words.pack(*registers))
        for s in self._slots:
            r = s.resource
            at = 2 * (r.address - start)  # type: ignore[operator]
            if at < 0 or at + s.size > 2 * n:
                continue
            raw = (value(r) - r.offset) / r.scale
            if raw - raw != 0.0:  # NaN or infinity
                continue
            if s.pack is None:
                data = b"".join(
                    w.to_bytes(2, "big")
                    for w in encode(raw, r.type, r.byte_order, r.word_order, r.length)  # type: ignore[arg-type]
                )
            else:
                if s.whole:
                    raw = min(s.hi, max(s.lo, round(raw)))
                try:
                    data = s.pack(raw)
                except (OverflowError, struct.error):  # beyond a float32
                    continue
            if s.where is None:
                buf[at : at + s.size] = data
            else:
                for k, w in enumerate(s.where):
                    buf[at + w] = data[k]
        registers[:] = words.unpack(buf)
