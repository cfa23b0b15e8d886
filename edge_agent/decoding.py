"""Register map -> typed readings. Pure: a read plan from a profile, and decoding of the blocks.

Resources of one table that sit close together are read in one request (at most 125 registers, or
2,000 bits), because every request costs a round trip on a slow serial line behind the gateway.

Each block's decoding is compiled once, when the plan is made: a precompiled ``struct`` per
resource at a fixed offset into the block's bytes, byte and word order folded into the struct's
endianness (or a byte permutation for the mixed orders CDAB and BADC), the plausible range as two
floats. Decoding a poll is then one pack of the block and one unpack per resource; the per-value
reference codec (``fieldloop.registers.decode``) is used only to explain a block that does not
pack (a register outside 0..65535), and a test holds the two to the same results.
"""

from __future__ import annotations

import math
import struct
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from operator import itemgetter

from edge_agent.readings import Quality, Reading
from fieldloop.profiles import DeviceProfile, Resource, Table
from fieldloop.registers import (
    STRUCT_CODES,
    DecodeError,
    RawType,
    byte_positions,
    decode,
    to_engineering,
)

MAX_REGISTERS = 125
MAX_BITS = 2000

_INF = math.inf


@dataclass(frozen=True, slots=True)
class _Field:
    """One resource's decoding, compiled: where its bytes are and how they become a value."""

    name: str
    type: RawType
    unpack: Callable[[bytes | bytearray, int], tuple[int | float]]  # Struct.unpack_from
    offset: int  # bytes from the start of the block
    reorder: Callable[[bytes], tuple[int, ...]] | None  # byte permutation for CDAB / BADC
    scale: float
    shift: float  # the profile's offset, added after scaling
    lo: float
    hi: float


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    resources: tuple[Resource, ...]
    _fields: tuple[_Field, ...] = field(init=False, repr=False, compare=False)
    _pack: Callable[..., bytes] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        fields = () if self.table.is_bits else tuple(_compile(self, r) for r in self.resources)
        object.__setattr__(self, "_fields", tuple(f for f in fields if f is not None))
        object.__setattr__(self, "_pack", struct.Struct(f">{self.count}H").pack)


def _compile(block: Block, r: Resource) -> _Field | None:
    if r.type is RawType.string:
        return None  # text resources (serial numbers) are not telemetry
    assert r.type is not None and r.address is not None
    code = STRUCT_CODES[r.type][0]
    offset = 2 * (r.address - block.address)
    where = byte_positions(r.type, r.byte_order, r.word_order)
    reorder = None
    if where == sorted(where):
        endian = ">"
    elif where == sorted(where, reverse=True):
        endian = "<"  # DCBA: the whole value little-endian
    else:
        endian = ">"
        reorder = itemgetter(*(offset + i for i in where))
    return _Field(
        r.name,
        r.type,
        struct.Struct(endian + code).unpack_from,
        offset,
        reorder,
        r.scale,
        r.offset,
        -_INF if r.min is None else r.min,
        _INF if r.max is None else r.max,
    )


def plan_reads(profile: DeviceProfile, max_gap: int = 8) -> list[Block]:
    """Coalesce resources into the fewest reads; a gap of up to ``max_gap`` unused registers is
    read through rather than costing another request."""
    blocks: list[Block] = []
    for table in Table:
        limit = MAX_BITS if table.is_bits else MAX_REGISTERS
        items = sorted((r for r in profile.resources if r.table is table), key=lambda r: r.address)
        current: list[Resource] = []
        start = end = 0
        for r in items:
            r_end = r.address + r.count
            if current and r.address - end <= max_gap and r_end - start <= limit:
                current.append(r)
                end = max(end, r_end)
                continue
            if current:
                blocks.append(Block(table, start, end - start, tuple(current)))
            current, start, end = [r], r.address, r_end
        if current:
            blocks.append(Block(table, start, end - start, tuple(current)))
    return blocks


def quality_of(resource: Resource, value: float) -> Quality:
    """Outside the profile's plausible range -> 'bad' (a broken sensor, not a process fault)."""
    if resource.min is not None and value < resource.min:
        return "bad"
    if resource.max is not None and value > resource.max:
        return "bad"
    return "good"


def decode_block(
    block: Block,
    data: Sequence[int] | Sequence[bool],
    *,
    device: str,
    asset: str,
    time: datetime,
) -> tuple[list[Reading], list[str]]:
    """Decode the words (or bits) of one block into readings; the second list names resources
    whose registers did not decode (e.g. a float32 that is NaN) and why."""
    count = block.count
    if len(data) < count:
        raise DecodeError(f"expected {count} values from {block.table}, got {len(data)}")
    if block.table.is_bits:
        return _decode_bits(block, data, device, asset, time), []
    try:
        buf = block._pack(*data[:count])
    except struct.error:  # a register outside 0..65535: let the reference codec say which
        return _decode_each(block, data, device, asset, time)
    readings: list[Reading] = []
    problems: list[str] = []
    new = tuple.__new__  # Reading(...) through its generated __new__ costs twice as much
    for f in block._fields:
        if f.reorder is None:
            raw = f.unpack(buf, f.offset)[0]
        else:
            raw = f.unpack(bytes(f.reorder(buf)), 0)[0]
        value = raw * f.scale + f.shift
        if value - value != 0.0:  # NaN or infinity: not a reading
            problems.append(f"{f.name}: {_not_finite(f, raw, value, data, block)}")
            continue
        quality: Quality = "good" if f.lo <= value <= f.hi else "bad"
        readings.append(new(Reading, (device, asset, f.name, time, value, quality)))
    return readings, problems


def _not_finite(f: _Field, raw: float, value: float, data: Sequence[int], block: Block) -> str:
    if isinstance(raw, float) and not math.isfinite(raw):
        i = f.offset // 2
        words = list(data[i : i + STRUCT_CODES[f.type][1]])
        return f"{f.type} registers {words} decode to {raw}, not a reading"
    return f"{f.name} scales to {value}"


def _decode_bits(
    block: Block, data: Sequence[int] | Sequence[bool], device: str, asset: str, time: datetime
) -> list[Reading]:
    readings = []
    for r in block.resources:
        value = 1.0 if data[r.address - block.address] else 0.0  # type: ignore[operator]
        readings.append(Reading(device, asset, r.name, time, value, quality_of(r, value)))
    return readings


def _decode_each(
    block: Block, data: Sequence[int] | Sequence[bool], device: str, asset: str, time: datetime
) -> tuple[list[Reading], list[str]]:
    """The reference path: every resource through ``fieldloop.registers.decode`` on its own, so
    one bad value names its resource and spoils nothing else."""
    readings: list[Reading] = []
    problems: list[str] = []
    for r in block.resources:
        i = r.address - block.address  # type: ignore[operator]
        try:
            raw = decode(list(data[i : i + r.count]), r.type, r.byte_order, r.word_order)  # type: ignore[arg-type]
            if isinstance(raw, str):
                continue  # text resources (serial numbers) are not telemetry
            value = to_engineering(raw, r.scale, r.offset)
            if not math.isfinite(value):
                raise DecodeError(f"{r.name} scales to {value}")
        except DecodeError as exc:
            problems.append(f"{r.name}: {exc}")
            continue
        readings.append(Reading(device, asset, r.name, time, value, quality_of(r, value)))
    return readings, problems


def latest_values(readings: Sequence[Reading]) -> Mapping[str, float]:
    return {r.metric: r.value for r in readings if r.quality == "good"}
