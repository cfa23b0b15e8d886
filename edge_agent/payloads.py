"""MQTT device payloads -> readings, by the device's profile. Pure: readings, or the reason the
payload is refused (invalid JSON, NaN, too big, too deep, unknown fields, wrong types)."""

from __future__ import annotations

import json
import math
from datetime import datetime
from typing import Any

from edge_agent.decoding import quality_of
from edge_agent.readings import Reading
from fieldloop.jsonpath import JsonPath
from fieldloop.jsonpath import parse as parse_path
from fieldloop.profiles import DeviceProfile, Resource
from fieldloop.registers import RawType, to_engineering

MAX_PAYLOAD = 64 * 1024
MAX_DEPTH = 16


class PayloadRejected(ValueError):
    pass


def _no_constants(name: str) -> float:
    raise PayloadRejected(f"{name} is not a number a sensor can report (NaN/Infinity refused)")


def _depth(doc: Any) -> int:
    deepest, stack = 0, [(doc, 1)]
    while stack:
        node, d = stack.pop()
        deepest = max(deepest, d)
        if d > MAX_DEPTH:
            return d
        if isinstance(node, dict):
            stack.extend((v, d + 1) for v in node.values())
        elif isinstance(node, list):
            stack.extend((v, d + 1) for v in node)
    return deepest


class PayloadMapper:
    """Maps one MQTT profile's payloads; built once per profile."""

    def __init__(self, profile: DeviceProfile, max_payload: int = MAX_PAYLOAD) -> None:
        self.profile = profile
        self.max_payload = max_payload
        self._paths: dict[str, JsonPath] = {
            r.name: parse_path(r.path) for r in profile.resources if r.path
        }
        self._known = {p.top for p in self._paths.values()} | set(profile.ignore_fields)

    def map(self, payload: bytes, *, device: str, asset: str, time: datetime) -> list[Reading]:
        if len(payload) > self.max_payload:
            raise PayloadRejected(f"payload of {len(payload)} bytes exceeds {self.max_payload}")
        try:
            doc = json.loads(payload, parse_constant=_no_constants)
        except PayloadRejected:
            raise
        except (ValueError, UnicodeDecodeError) as exc:
            raise PayloadRejected(f"invalid JSON: {exc}") from None
        if not isinstance(doc, dict):
            raise PayloadRejected(f"payload must be a JSON object, got {type(doc).__name__}")
        if _depth(doc) > MAX_DEPTH:
            raise PayloadRejected(f"payload nested deeper than {MAX_DEPTH} levels")
        unknown = sorted(set(doc) - self._known)
        if unknown:
            raise PayloadRejected(
                f"unknown field(s) {', '.join(map(repr, unknown))} for profile "
                f"{self.profile.name!r}; map them or list them in ignore_fields"
            )
        readings = []
        for r in self.profile.resources:
            try:
                raw = self._paths[r.name].get(doc)
            except KeyError:
                continue  # devices send partial payloads; a missing member is not an error
            value = _number(r, raw)
            readings.append(Reading(device, asset, r.name, time, value, quality_of(r, value)))
        if not readings:
            raise PayloadRejected(f"none of the profile's fields ({self._fields()}) is present")
        return readings

    def _fields(self) -> str:
        return ", ".join(r.path or r.name for r in self.profile.resources)


def _number(r: Resource, raw: Any) -> float:
    if r.type is RawType.bool:
        if not isinstance(raw, bool):
            raise PayloadRejected(f"{r.path}: expected true/false, got {raw!r}")
        return 1.0 if raw else 0.0
    if isinstance(raw, bool) or not isinstance(raw, int | float):
        raise PayloadRejected(f"{r.path}: expected a number, got {raw!r}")
    if r.type is RawType.int64 and not float(raw).is_integer():
        raise PayloadRejected(f"{r.path}: expected an integer, got {raw!r}")
    value = to_engineering(raw, r.scale, r.offset)
    if not math.isfinite(value):
        raise PayloadRejected(f"{r.path}: {raw!r} scales to {value}")
    return value
