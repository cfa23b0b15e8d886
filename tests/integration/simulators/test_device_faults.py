"""Device faults on a real socket, as the pymodbus client sees them: silence, late answers,
exception codes, swapped words and a connection cut mid-answer; normal again after each window."""

from __future__ import annotations

import time
from pathlib import Path

import pytest
from conftest import free_port
from pymodbus.client import AsyncModbusTcpClient
from pymodbus.exceptions import ModbusException

from fieldloop.profiles import load_profile
from fieldloop.registers import decode
from simulators.faults import DeviceFault
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import Scenario
from simulators.signals import Constant

pytestmark = pytest.mark.integration

REPO = Path(__file__).resolve().parents[3]
CHILLER = load_profile(REPO / "device_profiles/chiller.yaml")
DISCHARGE = CHILLER.resource("discharge_temp")  # float32 holding registers, big word order


class Clock:
    """Scenario time moved by the test (speed 1, so scenario seconds are clock seconds)."""

    def __init__(self) -> None:
        self.now = 0.0

    def __call__(self) -> float:
        return self.now


async def read(client: AsyncModbusTcpClient) -> float:
    rr = await client.read_holding_registers(DISCHARGE.address, count=2, device_id=1)
    if rr.isError():
        raise ModbusException(f"exception code {rr.exception_code}")
    return float(decode(rr.registers, DISCHARGE.type, DISCHARGE.byte_order, DISCHARGE.word_order))


async def test_each_fault_as_a_client_meets_it_and_recovery_after() -> None:
    clock = Clock()
    faults = (
        DeviceFault("comm_loss", 100.0, 101.0),
        DeviceFault("slow", 200.0, 300.0, delay=0.5),
        DeviceFault("exception", 300.0, 400.0, code=4),
        DeviceFault("wrong_order", 400.0, 500.0),
        DeviceFault("drop_connection", 500.0, 600.0),
    )
    device = SimulatedDevice(
        CHILLER, Scenario("faults", {"discharge_temp": Constant(81.5)}, (), faults), clock=clock
    )
    port = free_port()
    async with ModbusSimulator([device], "127.0.0.1", port):
        client = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=0.3, retries=0)
        await client.connect()
        try:
            assert await read(client) == 81.5

            clock.now = 100.0  # gone: no answer within the client's timeout
            with pytest.raises(ModbusException):
                await read(client)

            clock.now = 200.0  # slow: right, but late
            slow = AsyncModbusTcpClient("127.0.0.1", port=port, timeout=2.0, retries=0)
            await slow.connect()
            started = time.monotonic()
            assert await read(slow) == 81.5
            assert time.monotonic() - started >= 0.45
            slow.close()

            clock.now = 300.0  # answers with Modbus exception 4 (device failure)
            with pytest.raises(ModbusException, match="exception code 4"):
                await read(client)

            clock.now = 400.0  # words and bytes swapped: a value, but garbage
            value = await read(client)
            assert value != 81.5

            clock.now = 500.0  # the connection is cut mid-answer
            with pytest.raises(ModbusException):
                await read(client)

            clock.now = 600.0  # all windows over: normal again on a new connection
            await client.connect()
            assert await read(client) == 81.5
        finally:
            client.close()
