"""Simulating a whole site: every Modbus device of a site file (one server per host:port, unit
ids behind it), a scenario per device, and the ground truth of what the scenario injects."""

from __future__ import annotations

import json
from collections import defaultdict
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from fieldloop.brokers import BrokerAddress, parse_broker_url
from fieldloop.profiles import Site
from simulators.faults import behaviour
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.mqtt_devices import MqttDevice, MqttDeviceSimulator
from simulators.scenario_file import bind
from simulators.scenarios import BUILTIN, Scenario

#: scenario files shipped with FieldLoop, usable by name (`--scenario pump_bearing_wear`)
SHIPPED = Path(__file__).resolve().parent.parent / "scenarios"


def shipped_scenarios() -> list[str]:
    return sorted({*BUILTIN, *(p.stem for p in SHIPPED.glob("*.yaml"))})


def resolve_scenario(
    site: Site, scenario: str | Callable[[str], Scenario]
) -> Callable[[str], Scenario]:
    """A built-in name, a shipped scenario's name, or a scenario file's path -> the scenario of
    each device."""
    if not isinstance(scenario, str):
        return scenario
    if scenario in BUILTIN:
        return BUILTIN[scenario]
    path = Path(scenario)
    if path.suffix not in (".yaml", ".yml"):
        path = SHIPPED / f"{scenario}.yaml"
        if not path.is_file():
            raise ValueError(
                f"unknown scenario {scenario!r}; shipped scenarios: "
                f"{', '.join(shipped_scenarios())}, or a scenario file (.yaml)"
            )
    elif not path.is_file():
        raise ValueError(f"scenario file {scenario} does not exist")
    return bind(path, site)


def build_site_simulators(
    site: Site,
    scenario: str | Callable[[str], Scenario],
    *,
    seed: int = 0,
    speed: float = 1.0,
) -> list[ModbusSimulator]:
    make = resolve_scenario(site, scenario)
    by_port: dict[tuple[str, int], list[SimulatedDevice]] = defaultdict(list)
    for dev in site.spec.devices:
        ep = dev.modbus_tcp
        if ep is None:
            continue  # MQTT devices publish; see mqtt_devices()
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


def mqtt_devices(
    site: Site, make: Callable[[str], Scenario], *, seed: int = 0, speed: float = 1.0
) -> list[MqttDevice]:
    """The site's MQTT devices, each publishing its scenario's values on its own topic; the
    scenario's comm_loss makes it fall silent and ``malformed`` publish garbage."""
    devices = []
    for dev in site.spec.devices:
        if dev.mqtt is None:
            continue
        scenario = make(dev.id)
        faults = scenario.device_faults
        devices.append(
            MqttDevice.from_instance(
                dev,
                SimulatedDevice(site.profile_of(dev), scenario, seed=seed, speed=speed),
                silent=lambda t, f=faults: behaviour(f, t).silent,
                malformed=lambda t, f=faults: behaviour(f, t).malformed,
            )
        )
    return devices


def ground_truth(
    devices: list[SimulatedDevice], started: datetime, speed: float
) -> list[dict[str, object]]:
    """Every injected fault of ``devices`` as a record: scenario seconds and wall-clock times
    (``started`` + scenario seconds / ``speed``), ordered by start."""

    def wall(t: float | None) -> str | None:
        return None if t is None else (started + timedelta(seconds=t / speed)).isoformat()

    rows = [
        {
            "device": f.device,
            "resource": f.resource,
            "kind": f.kind,
            "scenario": d.scenario.name,
            "start_s": f.start,
            "end_s": f.end,
            "start": wall(f.start),
            "end": wall(f.end),
        }
        for d in devices
        for f in d.scenario.faults
    ]
    return sorted(rows, key=lambda r: (r["start_s"], str(r["device"]), str(r["resource"])))


def write_ground_truth(path: Path, rows: list[dict[str, object]]) -> None:
    """JSON Lines, one injected fault a line; written whole, then renamed into place."""
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), "utf-8")
    tmp.replace(path)


class SiteSimulation:
    """Every device of a site, started and stopped together: Modbus devices on their ports,
    MQTT devices publishing to ``broker`` (default: the site's device broker, else the local
    Mosquitto)."""

    def __init__(
        self,
        site: Site,
        scenario: str | Callable[[str], Scenario],
        *,
        seed: int = 0,
        speed: float = 1.0,
        truth: Path | None = None,
        broker: BrokerAddress | None = None,
    ) -> None:
        self.site = site
        self.speed = speed
        self.truth = truth
        make = resolve_scenario(site, scenario)
        self.modbus = build_site_simulators(site, make, seed=seed, speed=speed)
        publishing = mqtt_devices(site, make, seed=seed, speed=speed)
        if broker is None:
            broker = parse_broker_url(site.spec.device_broker or "mqtt://127.0.0.1:1883")
        self.mqtt = (
            MqttDeviceSimulator(publishing, broker, client_id=f"fieldloop-sim-{site.id}")
            if publishing
            else None
        )
        self.started: datetime | None = None

    @property
    def devices(self) -> list[SimulatedDevice]:
        mqtt = [d.device for d in self.mqtt.devices] if self.mqtt else []
        return [d for s in self.modbus for d in s.devices] + mqtt

    async def start(self) -> None:
        parts: list[ModbusSimulator | MqttDeviceSimulator] = [*self.modbus]
        if self.mqtt is not None:
            parts.append(self.mqtt)
        started: list[ModbusSimulator | MqttDeviceSimulator] = []
        try:
            for part in parts:
                await part.start()
                started.append(part)
        except BaseException:
            for part in started:  # nothing half-started is left holding a port
                await part.stop()
            raise
        # scenario time starts now for every device, so the ground truth's wall times hold
        self.started = datetime.now(UTC)
        for d in self.devices:
            d.restart_clock()
        if self.truth is not None:
            write_ground_truth(self.truth, ground_truth(self.devices, self.started, self.speed))

    async def stop(self) -> None:
        if self.mqtt is not None:
            await self.mqtt.stop()
        for s in self.modbus:
            await s.stop()

    async def __aenter__(self) -> SiteSimulation:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
