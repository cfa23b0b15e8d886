"""Real Modbus clients read the simulator correctly: the `mbpoll` binary and the pymodbus client
both see the electricity meter's word-swapped (CDAB) float32, in input registers and in holding
registers, and reading it with the wrong word order gives a different number, so the swap is
real on the wire."""

from __future__ import annotations

import asyncio
import math
import re
import shutil
from collections.abc import AsyncIterator
from dataclasses import dataclass

import pytest
from conftest import free_port
from pymodbus.client import AsyncModbusTcpClient
from support import REPO

from fieldloop.profiles import DeviceProfile, Resource, Table, load_profile
from fieldloop.registers import Order, decode
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import Scenario
from simulators.signals import Constant

pytestmark = pytest.mark.integration

UNIT = 7
#: one distinct constant per resource, none of them symmetric under a word swap; each is exact in
#: float32 and has at most 6 significant digits, because mbpoll prints floats with printf "%g"
VALUES = {
    "voltage_l1": 231.25,
    "current_l1": 12.375,
    "active_power": -4321.5,
    "power_factor": 0.875,
    "frequency": 49.875,
    "energy_total": 12345.5,
}
RESOURCE = "energy_total"  # at address 342, so an off-by-one in addressing would show


@dataclass(frozen=True)
class Served:
    port: int
    profile: DeviceProfile
    resource: Resource
    expected: float


def _float32_close(a: float, b: float) -> bool:
    return math.isclose(a, b, rel_tol=1e-6)  # float32 carries ~7 significant digits


@pytest.fixture(params=[Table.input_registers, Table.holding_registers])
async def meter(request: pytest.FixtureRequest) -> AsyncIterator[Served]:
    """The shipped meter (its values in input registers), and the same meter with its values in
    holding registers, as other makes of meter keep them."""
    profile = load_profile(REPO / "device_profiles/electricity_meter.yaml")
    assert {r.name for r in profile.resources} == set(VALUES)
    moved = [r.model_copy(update={"table": request.param}) for r in profile.resources]
    profile = profile.model_copy(update={"resources": moved})
    scenario = Scenario("constant", {name: Constant(v, jitter=0.0) for name, v in VALUES.items()})
    port = free_port()
    async with ModbusSimulator([SimulatedDevice(profile, scenario, unit_id=UNIT)], port=port):
        resource = next(r for r in profile.resources if r.name == RESOURCE)
        yield Served(port, profile, resource, VALUES[RESOURCE])


async def _mbpoll(served: Served, *, big_endian_words: bool) -> tuple[list[str], float]:
    """Run the real mbpoll once; return its command line and the float it printed."""
    if shutil.which("mbpoll") is None:
        pytest.fail("mbpoll is not installed: run scripts/ensure-services.sh (or `make services`)")
    r = served.resource
    kind = {Table.holding_registers: "4", Table.input_registers: "3"}[r.table]
    argv = ["mbpoll", "-m", "tcp", "-a", str(UNIT), "-0", "-r", str(r.address), "-c", "1",
            "-t", f"{kind}:float", "-1", "-o", "2", "-p", str(served.port)]  # fmt: skip
    if big_endian_words:
        argv.append("-B")  # mbpoll's default is low word first; -B is high word first
    argv.append("127.0.0.1")
    proc = await asyncio.create_subprocess_exec(
        *argv, stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE
    )
    out, err = await asyncio.wait_for(proc.communicate(), 10)
    text = out.decode() + err.decode()
    assert proc.returncode == 0, (argv, text)
    # a read line looks like "[342]: \t123456.78"
    m = re.search(rf"^\[{r.address}\]:\s+(\S+)\s*$", text, re.MULTILINE)
    assert m, (argv, text)
    return argv, float(m.group(1))


async def test_mbpoll_reads_the_word_swapped_float(meter: Served) -> None:
    assert meter.resource.word_order is Order.little  # the CDAB case this test is about
    argv, value = await _mbpoll(meter, big_endian_words=False)
    assert _float32_close(value, meter.expected), (" ".join(argv), value)


async def test_mbpoll_with_the_wrong_word_order_reads_another_number(meter: Served) -> None:
    argv, value = await _mbpoll(meter, big_endian_words=True)
    assert not _float32_close(value, meter.expected), (" ".join(argv), value)


async def test_pymodbus_client_reads_the_same_value(meter: Served) -> None:
    r = meter.resource
    async with AsyncModbusTcpClient("127.0.0.1", port=meter.port, timeout=2) as client:
        read = {
            Table.holding_registers: client.read_holding_registers,
            Table.input_registers: client.read_input_registers,
        }[r.table]
        response = await read(r.address, count=2, device_id=UNIT)
    assert not response.isError(), response
    value = decode(response.registers, r.type, r.byte_order, r.word_order)
    assert isinstance(value, float)
    assert _float32_close(value, meter.expected)
    # the same registers taken high word first are not the value: the words really are swapped
    swapped = decode(response.registers, r.type, r.byte_order, Order.big)
    assert isinstance(swapped, float)
    assert not _float32_close(swapped, meter.expected)
