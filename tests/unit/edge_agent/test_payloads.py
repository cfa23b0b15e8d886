from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from edge_agent.payloads import MAX_DEPTH, PayloadMapper, PayloadRejected
from fieldloop.profiles import DeviceProfile, load_profile

REPO = Path(__file__).resolve().parents[3]
T = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


@pytest.fixture
def mapper() -> PayloadMapper:
    return PayloadMapper(load_profile(REPO / "device_profiles/env_sensor.yaml"))


def read(mapper: PayloadMapper, doc: object) -> dict[str, tuple[float, str]]:
    payload = doc if isinstance(doc, bytes) else json.dumps(doc).encode()
    readings = mapper.map(payload, device="env-1", asset="ROOM-1", time=T)
    assert all(r.device == "env-1" and r.asset == "ROOM-1" and r.time == T for r in readings)
    return {r.metric: (r.value, r.quality) for r in readings}


def test_maps_fields_and_ignores_the_listed_ones(mapper: PayloadMapper) -> None:
    got = read(mapper, {"ts": 1, "temperature": 23.4, "humidity": 41, "co2": 612, "battery": 3})
    assert got == {
        "temperature": (23.4, "good"),
        "humidity": (41.0, "good"),
        "co2": (612.0, "good"),
        "battery": (3.0, "good"),
    }


def test_a_partial_payload_is_fine(mapper: PayloadMapper) -> None:
    assert read(mapper, {"temperature": 20.0}) == {"temperature": (20.0, "good")}


def test_out_of_range_is_bad_quality_not_rejected(mapper: PayloadMapper) -> None:
    assert read(mapper, {"humidity": 140})["humidity"] == (140.0, "bad")


@pytest.mark.parametrize(
    ("payload", "reason"),
    [
        (b"{not json", "invalid JSON"),
        (b'{"temperature": NaN}', "NaN/Infinity refused"),
        (b'{"temperature": Infinity}', "NaN/Infinity refused"),
        (b"[1, 2]", "must be a JSON object"),
        (b'{"temperature": 20, "pressure": 1013}', "unknown field(s) 'pressure'"),
        (b'{"temperature": "warm"}', "expected a number"),
        (b'{"temperature": true}', "expected a number"),
        (b'{"ts": 5}', "none of the profile's fields"),
        (b"\xff\xfe", "invalid JSON"),
    ],
)
def test_refused_payloads_say_why(mapper: PayloadMapper, payload: bytes, reason: str) -> None:
    with pytest.raises(PayloadRejected) as exc:
        mapper.map(payload, device="d", asset="a", time=T)
    assert reason in str(exc.value)


def test_oversized_and_deeply_nested_payloads_are_refused(mapper: PayloadMapper) -> None:
    big = json.dumps({"temperature": 1, "ts": "x" * 70_000}).encode()
    with pytest.raises(PayloadRejected, match="exceeds"):
        mapper.map(big, device="d", asset="a", time=T)
    deep: object = 1
    for _ in range(MAX_DEPTH + 2):
        deep = {"ts": deep}
    with pytest.raises(PayloadRejected, match="nested deeper"):
        mapper.map(json.dumps(deep).encode(), device="d", asset="a", time=T)


def test_nested_paths_bool_int_scale_and_offset() -> None:
    profile = DeviceProfile.model_validate(
        {
            "apiVersion": "fieldloop/v1",
            "kind": "DeviceProfile",
            "name": "m",
            "protocol": "mqtt",
            "resources": [
                {"name": "t", "path": "$.s.t", "scale": 0.1, "offset": -40},
                {"name": "door", "path": "$.s.door", "type": "bool"},
                {"name": "count", "path": "$.n[0]", "type": "int64"},
            ],
        }
    )
    m = PayloadMapper(profile)
    got = read(m, {"s": {"t": 650, "door": True}, "n": [7]})
    assert got == {"t": (25.0, "good"), "door": (1.0, "good"), "count": (7.0, "good")}
    with pytest.raises(PayloadRejected, match="expected true/false"):
        m.map(b'{"s": {"door": 1}}', device="d", asset="a", time=T)
    with pytest.raises(PayloadRejected, match="expected an integer"):
        m.map(b'{"n": [7.5]}', device="d", asset="a", time=T)
