"""Site files with MQTT devices, report policies and write allow-lists; MQTT profiles."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldloop.profiles import load_profile, load_site
from fieldloop.yamlfile import FileError

REPO = Path(__file__).resolve().parents[3]
HEAD = f"apiVersion: fieldloop/v1\nkind: Site\nsite: s1\nprofiles_dir: {REPO / 'device_profiles'}\n"


def site(tmp_path: Path, devices: str) -> Path:
    p = tmp_path / "site.yaml"
    p.write_text(HEAD + "devices:\n" + devices, encoding="utf-8")
    return p


def problems(path: Path) -> list[str]:
    with pytest.raises(FileError) as exc:
        load_site(path)
    return [f"{p.line}:{p.col}: {p.message}" for p in exc.value.problems]


def test_all_shipped_profiles_load() -> None:
    names = {p.stem for p in (REPO / "device_profiles").glob("*.yaml")}
    assert {"chiller", "water_pump", "air_compressor", "electricity_meter", "env_sensor"} <= names
    for name in names:
        assert load_profile(REPO / "device_profiles" / f"{name}.yaml").name == name
    meter = load_profile(REPO / "device_profiles/electricity_meter.yaml")
    assert {(r.type, r.word_order) for r in meter.resources} == {("float32", "little")}
    assert load_profile(REPO / "device_profiles/env_sensor.yaml").protocol == "mqtt"


def test_a_mixed_site_with_report_policy_and_write_allow(tmp_path: Path) -> None:
    s = load_site(
        site(
            tmp_path,
            "  - id: pump-1\n    asset: P-01\n    profile: water_pump\n"
            "    modbus_tcp: {host: 10.0.0.5, port: 502, unit_id: 3}\n"
            "    poll_interval: 500ms\n"
            "    report: {mode: change, deadband: 0.2, every: 5m}\n"
            "    write_allow: [speed_setpoint]\n"
            "  - id: env-1\n    asset: ROOM-1\n    profile: env_sensor\n"
            "    mqtt: {topic: sensors/room1}\n    poll_interval: 30s\n",
        )
    )
    pump, env = s.spec.devices
    assert pump.poll_interval == 0.5
    assert (pump.report.mode, pump.report.deadband, pump.report.every) == ("change", 0.2, 300.0)
    assert pump.write_allow == ["speed_setpoint"]
    assert env.mqtt is not None and env.mqtt.topic == "sensors/room1" and env.mqtt.qos == 1


def test_exactly_one_transport(tmp_path: Path) -> None:
    both = site(
        tmp_path,
        "  - id: d\n    asset: A\n    profile: chiller\n"
        "    modbus_tcp: {host: h}\n    mqtt: {topic: t}\n",
    )
    assert problems(both) == ["6:5: devices.0: give exactly one of modbus_tcp or mqtt"]


def test_transport_must_match_the_profile_protocol(tmp_path: Path) -> None:
    wrong = site(
        tmp_path,
        "  - id: env-1\n    asset: A\n    profile: env_sensor\n    modbus_tcp: {host: h}\n",
    )
    [msg] = problems(wrong)
    assert msg.startswith("9:5: device 'env-1' uses modbus_tcp but profile 'env_sensor' is a mqtt")


def test_write_allow_names_a_writable_resource(tmp_path: Path) -> None:
    bad = site(
        tmp_path,
        "  - id: p\n    asset: A\n    profile: water_pump\n    modbus_tcp: {host: h}\n"
        "    write_allow: [speed_setpoint, flow, nozzle]\n",
    )
    got = problems(bad)
    assert got[0].startswith("10:35: write_allow: 'flow' is not writable in profile 'water_pump'")
    assert got[1].startswith("10:41: write_allow: 'nozzle' is not a resource of profile")


def test_wildcard_topics_and_bad_durations_are_refused(tmp_path: Path) -> None:
    bad = site(
        tmp_path,
        "  - id: e\n    asset: A\n    profile: env_sensor\n    mqtt: {topic: sensors/+}\n"
        "    report: {every: soon}\n",
    )
    got = " | ".join(problems(bad))
    assert "wildcards" in got
    assert "'soon' is not a duration" in got


def test_mqtt_profile_resources_need_a_path(tmp_path: Path) -> None:
    p = tmp_path / "m.yaml"
    p.write_text(
        "apiVersion: fieldloop/v1\nkind: DeviceProfile\nname: m\nprotocol: mqtt\nresources:\n"
        "  - name: t\n    table: input_registers\n    address: 0\n    type: int16\n"
        "  - name: u\n    path: $.u[\n",
        encoding="utf-8",
    )
    with pytest.raises(FileError) as exc:
        load_profile(p)
    text = str(exc.value)
    assert "JSON path '$.u[' is not understood" in text
