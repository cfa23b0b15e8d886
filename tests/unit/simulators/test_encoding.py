"""simulators.encoding: the compiled per-table encoder writes exactly what the generic codec
writes, for every type, byte and word order, scale, offset, saturation and the swapped fault."""

from __future__ import annotations

import random
import struct
from typing import Any

from fieldloop.profiles import DeviceProfile, Order
from fieldloop.registers import encode, to_raw
from simulators.encoding import TableEncoder

KINDS = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
SIZE = {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}


def random_profile(rng: random.Random) -> DeviceProfile:
    resources: list[dict[str, Any]] = []
    address = rng.randrange(0, 20)
    for i in range(rng.randrange(1, 10)):
        kind = rng.choice([*KINDS, "string"])
        r: dict[str, Any] = {"name": f"m{i}", "table": "holding_registers", "address": address,
                             "type": kind}  # fmt: skip
        if kind == "string":
            r["length"] = rng.randrange(1, 4)
        else:
            r |= {"byte_order": rng.choice(["big", "little"]),
                  "word_order": rng.choice(["big", "little"])}  # fmt: skip
            if rng.random() < 0.5:
                r |= {"scale": rng.choice([0.1, 0.5, 2.0]), "offset": rng.uniform(-50, 50)}
        resources.append(r)
        address += SIZE.get(kind, r.get("length", 4)) + rng.choice([0, 0, 1, 2])
    return DeviceProfile.model_validate(
        {"apiVersion": "fieldloop/v1", "kind": "DeviceProfile", "name": "t", "resources": resources}
    )


def flip(o: Order) -> Order:
    return Order.little if o is Order.big else Order.big


def generic(profile: DeviceProfile, values: dict[str, float], start: int, n: int,
            swapped: bool) -> list[int]:  # fmt: skip
    registers = [0xAAAA] * n
    for r in profile.resources:
        raw = to_raw(values[r.name], r.scale, r.offset)
        bo, wo = (
            (flip(r.byte_order), flip(r.word_order)) if swapped else (r.byte_order, r.word_order)
        )
        if r.type.value == "string":
            bo, wo = r.byte_order, r.word_order
        try:
            words = encode(raw, r.type, bo, wo, r.length)
        except (OverflowError, struct.error):
            continue  # beyond a float32: the compiled encoder leaves the registers alone
        i = r.address - start
        if i >= 0 and i + len(words) <= n:
            registers[i : i + len(words)] = words
    return registers


def test_compiled_encoding_agrees_with_the_generic_codec() -> None:
    rng = random.Random(1130)
    specials = [0.0, -1.0, 1e12, -1e12, 3.4e38, 1e39, 65535.4, 65535.6, -32768.6, 2.0**63]
    for _ in range(300):
        profile = random_profile(rng)
        end = max(r.address + r.count for r in profile.resources)
        for swapped in (False, True):
            enc = TableEncoder(list(profile.resources), swapped=swapped)
            for _ in range(4):
                values = {
                    r.name: rng.choice(specials) if rng.random() < 0.3 else rng.uniform(-1e5, 1e5)
                    for r in profile.resources
                }
                start = rng.randrange(0, 5)  # reads that begin inside, or before, the map
                n = end - start + rng.randrange(0, 3)
                got = [0xAAAA] * n
                enc.fill(got, start, lambda r, v=values: v[r.name])
                assert got == generic(profile, values, start, n, swapped), (profile, values)
