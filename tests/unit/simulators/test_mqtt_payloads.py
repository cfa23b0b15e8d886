"""simulators.mqtt_devices: the payload builder (pure), and the fault hooks of one device. Every
built payload is read back with the edge's own JSON path parser and PayloadMapper."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest
from support import REPO

from edge_agent.payloads import PayloadMapper
from fieldloop.jsonpath import parse as parse_path
from fieldloop.profiles import DeviceInstance, DeviceProfile, load_profile
from simulators.modbus_server import SimulatedDevice
from simulators.mqtt_devices import MqttDevice, PayloadBuilder, encode, truncate
from simulators.scenarios import Scenario
from simulators.signals import Step

NOW = datetime(2025, 1, 1, tzinfo=UTC)


def profile(resources: list[dict[str, Any]], ignore: list[str] | None = None) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {"apiVersion": "fieldloop/v1", "kind": "DeviceProfile", "name": "p", "protocol": "mqtt",
         "ignore_fields": ignore or [], "resources": resources}
    )  # fmt: skip


def mapped(p: DeviceProfile, doc: dict[str, Any]) -> dict[str, float]:
    readings = PayloadMapper(p).map(encode(doc), device="d", asset="a", time=NOW)
    return {r.metric: r.value for r in readings}


def test_env_sensor_payload_has_each_field_and_ts() -> None:
    p = load_profile(REPO / "device_profiles/env_sensor.yaml")
    values = {"temperature": 23.5, "humidity": 41.25, "co2": 612.0, "battery": 3.0}
    doc = PayloadBuilder(p).build(values, ts=1732345678.9)
    assert doc == {"ts": 1732345678, **values}
    assert mapped(p, doc) == values


def test_nested_paths_share_their_parent_object() -> None:
    p = profile(
        [{"name": "t", "path": "$.env.t"}, {"name": "rh", "path": "$.env.rh"},
         {"name": "deep", "path": "$.a.b.c"}, {"name": "top", "path": "$['top level']"}]
    )  # fmt: skip
    doc = PayloadBuilder(p).build({"t": 21.5, "rh": 40.0, "deep": 1.0, "top": 2.0})
    assert doc == {"env": {"t": 21.5, "rh": 40.0}, "a": {"b": {"c": 1.0}}, "top level": 2.0}
    for r in p.resources:
        assert r.path is not None
        assert (
            parse_path(r.path).get(doc) == {"t": 21.5, "rh": 40.0, "deep": 1.0, "top": 2.0}[r.name]
        )
    assert mapped(p, doc) == {"t": 21.5, "rh": 40.0, "deep": 1.0, "top": 2.0}


def test_bool_int_and_scale() -> None:
    p = profile(
        [{"name": "door", "path": "$.door", "type": "bool"},
         {"name": "count", "path": "$.n", "type": "int64"},
         {"name": "temp", "path": "$.t10", "scale": 0.1}]
    )  # fmt: skip
    doc = PayloadBuilder(p).build({"door": 1.0, "count": 41.6, "temp": 21.5})
    assert doc["door"] is True
    assert doc["n"] == 42 and isinstance(doc["n"], int)
    assert doc["t10"] == pytest.approx(215.0)
    assert PayloadBuilder(p).build({"door": 0.0})["door"] is False
    assert mapped(p, doc) == pytest.approx({"door": 1.0, "count": 42.0, "temp": 21.5})


def test_no_ts_unless_listed_and_non_finite_values_left_out() -> None:
    p = profile([{"name": "a", "path": "$.a"}, {"name": "b", "path": "$.b"}])
    assert PayloadBuilder(p).build({"a": 1.0, "b": float("nan")}, ts=5.0) == {"a": 1.0}


@pytest.mark.parametrize("path", ["$.values[0]", "$.env.list[2].t"])
def test_index_paths_are_refused_naming_the_path(path: str) -> None:
    p = profile([{"name": "x", "path": path}])
    with pytest.raises(ValueError, match="member paths only") as err:
        PayloadBuilder(p)
    assert repr(path) in str(err.value)
    assert "'x'" in str(err.value)


@pytest.mark.parametrize(("first", "second"), [("$.env", "$.env.t"), ("$.env.t", "$.env")])
def test_a_value_and_an_object_at_one_member_clash(first: str, second: str) -> None:
    p = profile([{"name": "a", "path": first}, {"name": "b", "path": second}])
    with pytest.raises(ValueError, match="clashes") as err:
        PayloadBuilder(p)
    assert repr(first) in str(err.value) and repr(second) in str(err.value)


def test_a_modbus_profile_is_refused() -> None:
    meter = load_profile(REPO / "device_profiles/electricity_meter.yaml")
    with pytest.raises(ValueError, match="protocol: mqtt"):
        PayloadBuilder(meter)


def test_truncated_payload_is_never_json() -> None:
    for doc in ({}, {"a": 1}, {"a": {"b": [1, 2]}, "c": "x"}):
        with pytest.raises(json.JSONDecodeError):
            json.loads(truncate(encode(doc)))


def env_device(**hooks: Any) -> MqttDevice:
    p = load_profile(REPO / "device_profiles/env_sensor.yaml")
    scenario = Scenario("const", {"temperature": Step(20.0, 30.0, at=10.0)})
    spec = DeviceInstance.model_validate(
        {"id": "env-1", "asset": "R1", "profile": "env_sensor",
         "mqtt": {"topic": "site/room1", "qos": 0}, "poll_interval": "2s"}
    )  # fmt: skip
    return MqttDevice.from_instance(spec, SimulatedDevice(p, scenario), **hooks)


def test_device_from_site_entry_and_hooks_by_scenario_time() -> None:
    dev = env_device(malformed=lambda t: 5 <= t < 6, silent=lambda t: t >= 20)
    assert (dev.topic, dev.qos, dev.interval) == ("site/room1", 0, 2.0)
    assert json.loads(dev.payload(0.0, 100.0) or b"")["temperature"] == 20.0
    assert json.loads(dev.payload(12.0, 100.0) or b"")["temperature"] == 30.0
    with pytest.raises(json.JSONDecodeError):
        json.loads(dev.payload(5.5, 100.0) or b"")
    assert dev.payload(20.0, 100.0) is None
    # values a signal does not drive: the resource's min if positive, else 0 (as on Modbus)
    assert json.loads(dev.payload(0.0, 100.0) or b"")["co2"] == 0.0


@pytest.mark.parametrize(
    ("kwargs", "message"),
    [({"interval": 0}, "interval"), ({"qos": 3}, "qos"), ({"topic": "a/+/b"}, "wildcards")],
)
def test_device_parameters_are_checked(kwargs: dict[str, Any], message: str) -> None:
    dev = env_device()
    args = {"id": "env-1", "device": dev.device, "topic": "t"} | kwargs
    with pytest.raises(ValueError, match=message):
        MqttDevice(**args)
