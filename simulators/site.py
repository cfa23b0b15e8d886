"""Serving every Modbus device of a site file: one server per host:port, unit ids behind it."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

from fieldloop.profiles import Site
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenario_file import bind
from simulators.scenarios import BUILTIN, Scenario


def build_site_simulators(
    site: Site,
    scenario: str | Callable[[str], Scenario],
    *,
    seed: int = 0,
    speed: float = 1.0,
) -> list[ModbusSimulator]:
    if isinstance(scenario, str) and scenario.endswith((".yaml", ".yml")):
        scenario = bind(Path(scenario), site)
    if isinstance(scenario, str):
        if scenario not in BUILTIN:
            raise ValueError(
                f"unknown scenario {scenario!r}; built-in scenarios: "
                f"{', '.join(sorted(BUILTIN))}, or a scenario file (.yaml)"
            )
        make = BUILTIN[scenario]
    else:
        make = scenario
    by_port: dict[tuple[str, int], list[SimulatedDevice]] = defaultdict(list)
    for dev in site.spec.devices:
        ep = dev.modbus_tcp
        by_port[(ep.host, ep.port)].append(
            SimulatedDevice(
                profile=site.profile_of(dev),
                scenario=make(dev.id),
                unit_id=ep.unit_id,
                seed=seed,
                speed=speed,
            )
        )
    return [ModbusSimulator(devs, host, port) for (host, port), devs in by_port.items()]
