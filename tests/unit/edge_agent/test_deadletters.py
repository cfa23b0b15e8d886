from __future__ import annotations

from datetime import UTC, datetime
from pathlib import Path

from edge_agent.deadletters import KEEP_PAYLOAD, DeadLetterFile

T = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def test_records_reason_payload_and_position(tmp_path: Path) -> None:
    dl = DeadLetterFile(tmp_path / "dl.jsonl")
    dl.add(time=T, source="mqtt", device="env-1", topic="t/1", reason="invalid JSON", payload=b"{x")
    dl.add(time=T, source="mqtt", device="env-1", topic="t/1", reason="binary", payload=b"\xff\x00")
    dl.add(time=T, source="mqtt", device=None, topic="t/2", reason="big", payload=b"a" * 9000)
    records = dl.read()
    assert dl.count == 3
    assert records[0]["payload"] == "{x" and records[0]["reason"] == "invalid JSON"
    assert records[1]["payload"] is None and records[1]["payload_b64"] == "/wA="
    assert records[2]["size"] == 9000 and records[2]["truncated"] is True
    assert len(records[2]["payload"]) == KEEP_PAYLOAD  # type: ignore[arg-type]


def test_rotates_keeping_one_previous_file(tmp_path: Path) -> None:
    dl = DeadLetterFile(tmp_path / "dl.jsonl", max_bytes=2000)
    for i in range(20):
        dl.add(time=T, source="mqtt", device="d", topic="t", reason=f"r{i}", payload=b"x" * 100)
    assert (tmp_path / "dl.jsonl.1").exists()
    assert (tmp_path / "dl.jsonl").stat().st_size <= 2000
    assert dl.read()[-1]["reason"] == "r19"
