"""A simulated Modbus TCP device: a real pymodbus server on a real port, serving a device profile.

Register values are computed at read time from the scenario's signals, so a client always sees
the value of "now" in scenario time (wall time since start times ``speed``).
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import time
from collections.abc import Callable
from dataclasses import dataclass, field

from pymodbus.constants import ExcCodes
from pymodbus.server import ModbusTcpServer
from pymodbus.simulator import DataType, SimData, SimDevice

from fieldloop.net import ensure_port_free, wait_listening
from fieldloop.profiles import DeviceProfile, Resource, Table
from fieldloop.registers import decode, to_engineering
from simulators.encoding import TableEncoder
from simulators.faults import behaviour
from simulators.scenarios import Scenario

log = logging.getLogger("fieldloop.simulator")

_FC_TABLE = {
    1: Table.coils,
    5: Table.coils,
    15: Table.coils,
    2: Table.discrete_inputs,
    3: Table.holding_registers,
    6: Table.holding_registers,
    16: Table.holding_registers,
    23: Table.holding_registers,
    4: Table.input_registers,
}


@dataclass
class SimulatedDevice:
    """One device (one unit id) behind a simulated Modbus TCP port."""

    profile: DeviceProfile
    scenario: Scenario
    unit_id: int = 1
    seed: int = 0
    speed: float = 1.0
    clock: Callable[[], float] = time.monotonic
    #: values pinned by a test or benchmark, overriding the scenario
    overrides: dict[str, float] = field(default_factory=dict)
    #: seconds each answer is held back (a slow device, or one behind a busy serial gateway)
    response_delay: float = 0.0
    #: set by the simulator serving the device: cut its port's connections (drop_connection)
    drop_connections: Callable[[], None] | None = None
    started_at: float = field(init=False)

    def __post_init__(self) -> None:
        if not 0 <= self.unit_id <= 255:
            raise ValueError(f"unit_id must be 0..255, got {self.unit_id}")
        if self.speed <= 0:
            raise ValueError(f"speed must be > 0, got {self.speed}")
        names = {r.name for r in self.profile.resources}
        unknown = sorted(set(self.scenario.signals) - names)
        if unknown:
            raise ValueError(
                f"scenario {self.scenario.name!r} drives {', '.join(unknown)}, which profile "
                f"{self.profile.name!r} does not have (it has: {', '.join(sorted(names))})"
            )
        self.started_at = self.clock()
        self._stopping = asyncio.Event()
        self._by_table = {t: [r for r in self.profile.resources if r.table is t] for t in Table}
        # (table, swapped) -> its compiled encoding, made at the first read that needs it
        # (swapped: for the wrong_order fault, which most devices never have)
        self._encoders: dict[tuple[Table, bool], TableEncoder] = {}

    def restart_clock(self) -> None:
        """Scenario time 0 is now (when the whole site is up, not when this device was made)."""
        self.started_at = self.clock()

    def scenario_time(self) -> float:
        return (self.clock() - self.started_at) * self.speed

    def value(self, resource: Resource, t: float) -> float:
        if resource.name in self.overrides:
            return self.overrides[resource.name]
        signal = self.scenario.signals.get(resource.name)
        if signal is None:
            return resource.min if resource.min is not None and resource.min > 0 else 0.0
        return signal.value(t, self.seed, resource.name)

    def _extent(self, table: Table) -> int:
        ends = [r.address + r.count for r in self.profile.resources if r.table is table]
        return max(ends, default=0)

    def sim_device(self) -> SimDevice:
        # Four separate blocks, as most PLCs and gateways have; each at least 16 wide so bit tables
        # pack into whole registers.
        def regs(table: Table) -> list[SimData]:
            return [
                SimData(0, count=max(self._extent(table), 1), values=0, datatype=DataType.REGISTERS)
            ]

        def bits(table: Table) -> list[SimData]:
            n = max(16, -(-self._extent(table) // 16) * 16)
            return [SimData(0, count=n, values=False, datatype=DataType.BITS)]

        return SimDevice(
            self.unit_id,
            simdata=(
                bits(Table.coils),
                bits(Table.discrete_inputs),
                regs(Table.holding_registers),
                regs(Table.input_registers),
            ),
            action=self._on_request,
        )

    async def _on_request(
        self,
        function_code: int,
        start_address: int,
        address: int,
        count: int,
        registers: list[int],
        set_values: list[int] | list[bool] | None,
    ) -> ExcCodes | None:
        table = _FC_TABLE.get(function_code)
        if table is None:
            return ExcCodes.ILLEGAL_FUNCTION
        now = self.scenario_time()
        act = behaviour(self.scenario.device_faults, now)
        if act.silent:
            # no answer while the device is gone; what is still held when it returns gets the
            # gateway's "target did not respond" (its client gave up long before)
            await self._hold(self._silent_for(now))
            return ExcCodes.GATEWAY_NO_RESPONSE
        if act.drop and self.drop_connections is not None:
            self.drop_connections()
            return None
        delay = max(self.response_delay, act.delay / self.speed)
        if delay:
            await self._hold(delay)
        if act.exception is not None:
            return _exception(act.exception)
        if set_values is not None:
            # A write sticks, as on a device: the written value overrides the scenario.
            self._apply_write(table, address, list(set_values))
            return None
        if not table.is_bits:
            key = (table, act.swapped)
            encoder = self._encoders.get(key)
            if encoder is None:
                encoder = self._encoders[key] = TableEncoder(
                    self._by_table[table], swapped=act.swapped
                )
            encoder.fill(registers, start_address, lambda r: self.value(r, now))
            return None
        for r in self._by_table[table]:
            reg, bit = divmod(r.address, 16)
            i = reg - start_address
            if 0 <= i < len(registers):
                mask = 1 << bit
                registers[i] = (
                    (registers[i] | mask) if self.value(r, now) else (registers[i] & ~mask)
                )
        return None

    async def _hold(self, seconds: float | None) -> None:
        """Wait ``seconds`` (None: until the simulator stops), released at once by a stop so no
        handler outlives the server."""
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), seconds)

    def _silent_for(self, now: float) -> float | None:
        """Wall seconds until no comm_loss fault covers the device any more (None: never)."""
        t = now
        while True:
            ends = [f.end for f in self.scenario.device_faults
                    if f.kind == "comm_loss" and f.active(t)]  # fmt: skip
            if not ends:
                return (t - now) / self.speed
            if None in ends:
                return None
            t = max(e for e in ends if e is not None)

    def _apply_write(self, table: Table, address: int, values: list[int] | list[bool]) -> None:
        end = address + len(values)
        for r in self.profile.resources:
            if r.table is not table or not (address <= r.address and r.address + r.count <= end):
                continue
            i = r.address - address
            if table.is_bits:
                self.overrides[r.name] = 1.0 if values[i] else 0.0
            else:
                raw = decode(list(values[i : i + r.count]), r.type, r.byte_order, r.word_order)  # type: ignore[arg-type]
                if not isinstance(raw, str):
                    self.overrides[r.name] = to_engineering(raw, r.scale, r.offset)


def _exception(code: int) -> ExcCodes:
    try:
        return ExcCodes(code)
    except ValueError:  # a code pymodbus has no name for: the generic device failure
        return ExcCodes.DEVICE_FAILURE


#: half an MBAP header: what a client reads before a gateway's connection goes dead
_TORN_FRAME = b"\x00\x01\x00"


class ModbusSimulator:
    """A Modbus TCP server on host:port with one or more simulated devices (unit ids), as a
    serial-to-TCP gateway presents several RS-485 devices behind one port."""

    def __init__(self, devices: list[SimulatedDevice], host: str = "127.0.0.1", port: int = 502):
        if not devices:
            raise ValueError("a simulator needs at least one device")
        ids = [d.unit_id for d in devices]
        if len(set(ids)) != len(ids):
            raise ValueError(f"unit ids behind one port must differ, got {ids}")
        self.devices = devices
        self.host = host
        self.port = port
        self._server: ModbusTcpServer | None = None
        for d in devices:
            d.drop_connections = self._drop_connections

    def _drop_connections(self) -> None:
        """Cut every client connection mid-frame, as a rebooting gateway does."""
        if self._server is None:
            return
        for conn in list(self._server.active_connections.values()):
            transport = conn.transport
            if transport is not None:
                with contextlib.suppress(Exception):
                    transport.write(_TORN_FRAME)
                transport.abort()

    async def start(self) -> None:
        await ensure_port_free(self.host, self.port, "change the port in the site file")
        self._server = ModbusTcpServer(
            [d.sim_device() for d in self.devices], address=(self.host, self.port)
        )
        await self._server.serve_forever(background=True)
        await wait_listening(self.host, self.port)
        log.info(
            "simulator: %s serving %s on %s:%d",
            ", ".join(d.profile.name for d in self.devices),
            ", ".join(d.scenario.name for d in self.devices),
            self.host,
            self.port,
        )

    async def stop(self) -> None:
        if self._server is not None:
            for d in self.devices:
                d._stopping.set()
            await asyncio.sleep(0)  # let held-back answers finish before the transport goes
            await self._server.shutdown()
            self._server = None

    async def __aenter__(self) -> ModbusSimulator:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
