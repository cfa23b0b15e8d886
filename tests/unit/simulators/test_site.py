"""simulators.site: a scenario's faults reach the MQTT devices too (silent, malformed), and the
ground truth records every injected fault with scenario and wall-clock times."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from fieldloop.profiles import load_site
from simulators.scenario_file import bind
from simulators.site import ground_truth, mqtt_devices, write_ground_truth

REPO = Path(__file__).resolve().parents[3]
PLANT = load_site(REPO / "deploy/sites/simulated-plant.yaml")

SCENARIO = """apiVersion: fieldloop/v1
kind: Scenario
name: sensor-trouble
extends: normal_day
devices:
  env-room1:
    faults:
      - {kind: malformed, from: 1m, to: 2m}
      - {kind: comm_loss, from: 3m, to: 4m}
"""


def test_scenario_faults_make_an_mqtt_device_garble_then_fall_silent(tmp_path: Path) -> None:
    (tmp_path / "normal_day.yaml").write_text(
        (REPO / "scenarios/normal_day.yaml").read_text(encoding="utf-8"), encoding="utf-8"
    )
    path = tmp_path / "trouble.yaml"
    path.write_text(SCENARIO, encoding="utf-8")
    [sensor] = mqtt_devices(PLANT, bind(path, PLANT), seed=1)
    assert (sensor.id, sensor.topic, sensor.interval) == (
        "env-room1",
        "sim-plant/sensors/room1",
        10,
    )
    good = json.loads(sensor.payload(30.0, 1e9) or b"")
    assert 18 < good["temperature"] < 30 and good["battery"] == 3.0
    garbled = sensor.payload(90.0, 1e9)
    assert garbled is not None
    with pytest.raises(json.JSONDecodeError):
        json.loads(garbled)
    assert sensor.payload(200.0, 1e9) is None  # gone
    assert json.loads(sensor.payload(300.0, 1e9) or b"")["humidity"] > 0  # back

    started = datetime(2026, 11, 30, 8, 0, tzinfo=UTC)
    rows = ground_truth([sensor.device], started, speed=60)
    assert [(r["kind"], r["start_s"], r["end_s"], r["start"], r["end"]) for r in rows] == [
        ("malformed", 60.0, 120.0, "2026-11-30T08:00:01+00:00", "2026-11-30T08:00:02+00:00"),
        ("comm_loss", 180.0, 240.0, "2026-11-30T08:00:03+00:00", "2026-11-30T08:00:04+00:00"),
    ]
    out = tmp_path / "truth.jsonl"
    write_ground_truth(out, rows)
    assert [json.loads(x) for x in out.read_text(encoding="utf-8").splitlines()] == rows
