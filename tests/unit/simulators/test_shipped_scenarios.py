"""The scenario files shipped in scenarios/: each loads, binds to the simulated plant and to
the demo site (a shared scenario covers device models a site does not have), and says what it
injects."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldloop.profiles import load_site
from simulators.site import SHIPPED, resolve_scenario, shipped_scenarios

REPO = Path(__file__).resolve().parents[3]
PLANT = load_site(REPO / "deploy/sites/simulated-plant.yaml")
DEMO = load_site(REPO / "deploy/sites/demo.yaml")
FILES = sorted(p.stem for p in SHIPPED.glob("*.yaml"))

#: what each scenario injects, per device: (resource, kind)
TRUTH = {
    "normal_day": {},
    "chiller_overheating": {"chiller-1": [("discharge_temp", "drift_hold_recover")]},
    "pump_bearing_wear": {"pump-1": [("vibration_rms", "drift"), ("bearing_temp", "drift")]},
    "compressor_service_due": {"compressor-1": [("run_hours", "counter_reset")]},
    "meter_comm_loss": {"meter-main": [("*", "comm_loss"), ("*", "exception")]},
    "flapping_sensor": {"chiller-1": [("discharge_temp", "flapping")]},
    "power_blip": {d.id: [("*", "comm_loss")] for d in PLANT.spec.devices},
}


def test_every_shipped_file_is_listed_and_known_here() -> None:
    assert set(FILES) == set(TRUTH)
    assert set(FILES) <= set(shipped_scenarios())


@pytest.mark.parametrize("name", FILES)
def test_a_shipped_scenario_drives_every_resource_of_the_plant(name: str) -> None:
    make = resolve_scenario(PLANT, name)
    for dev in PLANT.spec.devices:
        s = make(dev.id)
        resources = {r.name for r in PLANT.profile_of(dev).resources}
        assert set(s.signals) == resources, (name, dev.id)  # normal_day covers them all
        got = sorted((f.resource, f.kind) for f in s.faults)
        assert got == sorted(TRUTH[name].get(dev.id, [])), (name, dev.id)


@pytest.mark.parametrize("name", [n for n in FILES if n != "meter_comm_loss"])
def test_device_neutral_scenarios_fit_the_demo_site_too(name: str) -> None:
    assert resolve_scenario(DEMO, name)("chiller-1").signals
