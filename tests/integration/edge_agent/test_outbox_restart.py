"""Store-and-forward with real kills: an edge agent killed with SIGKILL while its event is unacked
resends it after restart; central stores it once; the restarted agent does not raise the open
episode again and its sequence numbers carry on."""

from __future__ import annotations

import signal
from pathlib import Path

import pytest
from conftest import free_port
from sqlalchemy import select
from support import REPO, Processes, eventually, outbox_rows, write_rules, write_site

from central.server import CentralServer
from central.settings import Settings
from central.storage.models import EdgeEvent
from fieldloop.profiles import load_profile
from fieldloop.topics import Topics
from simulators.modbus_server import ModbusSimulator, SimulatedDevice
from simulators.scenarios import chiller_normal

pytestmark = pytest.mark.integration


async def test_killed_edge_resends_unacked_event_after_restart(
    processes: Processes, mosquitto: str, db_url: str, topics: Topics, tmp_path: Path
) -> None:
    sim_port = free_port()
    site = write_site(tmp_path, port=sim_port, poll_interval=0.05)
    rules = write_rules(tmp_path, hold="0.3s")
    data = tmp_path / "edge"
    outbox = data / "outbox-test-site.sqlite"
    edge_args = [
        "edge", "--site", str(site), "--rules", str(rules), "--broker", mosquitto,
        "--data-dir", str(data), "--topic-root", topics.root,
    ]  # fmt: skip
    device = SimulatedDevice(load_profile(REPO / "device_profiles/chiller.yaml"), chiller_normal())
    device.overrides["discharge_temp"] = 100.0  # overheating from the start

    async with ModbusSimulator([device], "127.0.0.1", sim_port):
        # 1. no central yet: the edge detects, stores and publishes, and nobody acks
        edge = processes.fieldloop(edge_args, tmp_path / "edge1.log")
        try:

            async def stored() -> bool:
                return outbox_rows(outbox, "event") == 1 and outbox_rows(outbox, "telemetry") > 0

            await eventually(stored, within=20, what="the fault event and telemetry in the outbox")
        finally:
            edge.send_signal(signal.SIGKILL)  # 2. a real kill, mid-flight
            edge.wait(10)
        assert outbox_rows(outbox, "event") == 1
        assert outbox_rows(outbox, "telemetry") >= 1  # readings of the time central was away

        # 3. central comes up, then the edge restarts and resends what it still holds
        central = CentralServer(
            Settings(
                db_url=db_url,
                broker_url=mosquitto,
                port=free_port(),
                topic_root=topics.root,
                consumer_client_id=f"central-{topics.root}",
            )
        )
        await central.start()
        edge = processes.fieldloop(edge_args, tmp_path / "edge2.log")
        try:

            async def drained() -> bool:
                return outbox_rows(outbox) == 0

            await eventually(drained, within=20, what="the resent event to be acked")
            sessions = central.app.state.sessions

            def events() -> list[tuple[str, int]]:
                with sessions() as s:
                    return [
                        (e.kind, e.seq)
                        for e in s.execute(select(EdgeEvent).order_by(EdgeEvent.seq)).scalars()
                    ]

            assert events() == [("fault_opened", 1)]

            # 4. the fault ends: the restarted agent clears the episode it did not raise itself
            device.overrides["discharge_temp"] = 80.0

            async def cleared() -> bool:
                return events() == [("fault_opened", 1), ("fault_cleared", 2)]

            await eventually(cleared, within=20, what="the clear event, seq 2")
            await eventually(drained, within=20, what="the clear to be acked")
        finally:
            edge.terminate()
            edge.wait(10)
            await central.stop()
        log = (tmp_path / "edge2.log").read_text()
        assert "1 event(s) and" in log
        assert "telemetry batch(es) waiting in the outbox" in log
