"""Register map -> typed readings. Pure: a read plan from a profile, and decoding of the blocks.

Resources of one table that sit close together are read in one request (at most 125 registers, or
2,000 bits), because every request costs a round trip on a slow serial line behind the gateway.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime

from edge_agent.readings import Quality, Reading
from fieldloop.profiles import DeviceProfile, Resource, Table
from fieldloop.registers import DecodeError, decode, to_engineering

MAX_REGISTERS = 125
MAX_BITS = 2000


@dataclass(frozen=True)
class Block:
    """One read request: ``count`` registers (or bits) of ``table`` from ``address``."""

    table: Table
    address: int
    count: int
    resources: tuple[Resource, ...]


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
    if len(data) < block.count:
        raise DecodeError(f"expected {block.count} values from {block.table}, got {len(data)}")
    readings: list[Reading] = []
    problems: list[str] = []
    for r in block.resources:
        i = r.address - block.address
        try:
            if block.table.is_bits:
                value = 1.0 if data[i] else 0.0
            else:
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
