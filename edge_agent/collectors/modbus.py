"""Modbus TCP collector: one task per device, read function codes only.

A device that stops answering costs only its own task: each request has the device's timeout, and
reconnects back off (capped, jittered) without delaying any other device's poll.
"""

from __future__ import annotations

import asyncio
import logging
import zlib
from collections import deque
from collections.abc import Callable
from datetime import UTC, datetime

from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from edge_agent.decoding import Block, decode_block, plan_reads
from edge_agent.readings import Reading
from fieldloop.backoff import Backoff
from fieldloop.profiles import DeviceInstance, DeviceProfile, Table
from fieldloop.registers import encode, to_raw
from fieldloop.tasks import raise_if_cancelled

log = logging.getLogger("fieldloop.edge.modbus")


def utcnow() -> datetime:
    return datetime.now(UTC)


class PollFailed(Exception):
    pass


class WriteRefused(PermissionError):
    """A write to a device resource that the site file's write_allow does not name."""


class ModbusCollector:
    def __init__(
        self,
        device: DeviceInstance,
        profile: DeviceProfile,
        *,
        on_readings: Callable[[list[Reading]], None],
        on_failure: Callable[[datetime, str], None],
        on_success: Callable[[datetime], None],
        clock: Callable[[], datetime] = utcnow,
    ) -> None:
        self.device = device
        self.profile = profile
        self.blocks = plan_reads(profile)
        self.on_readings = on_readings
        self.on_failure = on_failure
        self.on_success = on_success
        self.clock = clock
        ep = device.modbus_tcp
        assert ep is not None, "ModbusCollector needs a modbus_tcp device"
        self._endpoint = ep
        self._client = AsyncModbusTcpClient(
            ep.host,
            port=ep.port,
            timeout=ep.timeout,
            retries=ep.retries,
            reconnect_delay=0,  # we reconnect ourselves, on our own backoff
        )
        self._backoff = Backoff(initial=min(1.0, device.poll_interval), cap=60.0)
        self._next_connect = 0.0
        self.polls = 0
        self.failures = 0
        #: how late each poll started against its schedule (seconds), newest last
        self.lateness: deque[float] = deque(maxlen=1000)

    def phase(self) -> float:
        """Where in its interval this device polls: fixed per device id (a stable hash), so the
        devices of a site spread over the interval instead of all asking at the same instant,
        which would make the last of hundreds of polls start late every time."""
        return zlib.crc32(self.device.id.encode()) / 2**32 * self.device.poll_interval

    async def run(self) -> None:
        loop = asyncio.get_running_loop()
        interval = self.device.poll_interval
        next_tick = loop.time() + self.phase()
        await asyncio.sleep(next_tick - loop.time())
        try:
            while True:
                self.lateness.append(max(0.0, loop.time() - next_tick))
                await self.poll_once()
                raise_if_cancelled()
                next_tick += interval
                now = loop.time()
                if next_tick < now:  # a slow poll: skip the missed ticks, never burst
                    next_tick = now + interval - ((now - next_tick) % interval)
                await asyncio.sleep(next_tick - now)
        finally:
            self._client.close()

    async def poll_once(self) -> None:
        try:
            await self._poll()
        except Exception as exc:
            # (pymodbus raises more than it documents; an uncaught one would stop polling for
            # good, the failure ThingsBoard's gateway is known for)
            self.failures += 1
            self._client.close()
            self.on_failure(self.clock(), f"{self._where()}: {type(exc).__name__}: {exc}")

    async def write(self, resource: str, value: float) -> None:
        """Write one resource, only if the site file's write_allow names it. Read function codes
        are all the agent otherwise uses: a gateway must not change a plant by accident."""
        if resource not in self.device.write_allow:
            raise WriteRefused(
                f"{self.device.id}: writing {resource!r} is refused; only resources listed in "
                "the device's write_allow in the site file may be written (default: none)"
            )
        r = self.profile.resource(resource)
        unit = self._endpoint.unit_id
        if not self._client.connected:
            await self._client.connect()
        if r.table is Table.coils:
            rr = await self._client.write_coil(r.address, bool(value), device_id=unit)  # type: ignore[arg-type]
        elif r.table is Table.holding_registers:
            words = encode(to_raw(value, r.scale, r.offset), r.type, r.byte_order, r.word_order,
                           r.length)  # type: ignore[arg-type]  # fmt: skip
            rr = await self._client.write_registers(r.address, words, device_id=unit)  # type: ignore[arg-type]
        else:
            raise WriteRefused(
                f"{self.device.id}: {resource!r} is in {r.table}, which is read-only"
            )
        if rr.isError():
            raise PollFailed(f"{self._where()}: write of {resource} answered with {rr}")

    async def _poll(self) -> None:
        loop = asyncio.get_running_loop()
        self.polls += 1
        if not self._client.connected:
            if loop.time() < self._next_connect:
                return
            try:
                ok = await asyncio.wait_for(
                    self._client.connect(), timeout=self._endpoint.timeout + 1
                )
            except (TimeoutError, OSError, ModbusException) as exc:
                ok, reason = False, str(exc) or type(exc).__name__
            else:
                reason = "connection refused or timed out"
            if not ok:
                self._client.close()
                self._next_connect = loop.time() + self._backoff.next_delay()
                self.failures += 1
                self.on_failure(self.clock(), f"cannot connect to {self._where()}: {reason}")
                return
            self._backoff.reset()
        time = self.clock()
        try:
            readings, problems = await self._read_all(time)
        except PollFailed as exc:
            self.failures += 1
            self._client.close()
            self._next_connect = loop.time() + self._backoff.next_delay()
            self.on_failure(time, str(exc))
            return
        for p in problems:
            log.warning("%s: %s", self.device.id, p)
        self.on_success(time)
        if readings:
            self.on_readings(readings)

    def _where(self) -> str:
        ep = self._endpoint
        return f"{ep.host}:{ep.port} unit {ep.unit_id}"

    async def _read_all(self, time: datetime) -> tuple[list[Reading], list[str]]:
        readings: list[Reading] = []
        problems: list[str] = []
        for block in self.blocks:
            data = await self._read(block)
            got, bad = decode_block(
                block, data, device=self.device.id, asset=self.device.asset, time=time
            )
            readings.extend(got)
            problems.extend(bad)
        return readings, problems

    async def _read(self, block: Block) -> list[int] | list[bool]:
        c = self._client
        unit = self._endpoint.unit_id
        call = {
            Table.holding_registers: c.read_holding_registers,
            Table.input_registers: c.read_input_registers,
            Table.coils: c.read_coils,
            Table.discrete_inputs: c.read_discrete_inputs,
        }[block.table]
        try:
            rr = await call(block.address, count=block.count, device_id=unit)
        except (ModbusException, OSError, TimeoutError) as exc:
            raise PollFailed(
                f"{self._where()}: reading {block.count} {block.table} at {block.address} "
                f"failed: {exc}"
            ) from exc
        if rr.isError():
            code = getattr(rr, "exception_code", "?")
            raise PollFailed(
                f"{self._where()}: device answered {block.table} {block.address}+{block.count} "
                f"with Modbus exception code {code}"
            )
        data = rr.bits if block.table.is_bits else rr.registers
        if len(data) < block.count:
            raise PollFailed(
                f"{self._where()}: asked for {block.count} {block.table}, got {len(data)}"
            )
        return data
