"""`fieldloop edge status`: what the agent last wrote to its data directory, for the technician
standing at the gateway (works whether the agent is running or stopped)."""

from __future__ import annotations

import json
import sys
from datetime import UTC, datetime
from pathlib import Path

from edge_agent.agent import STATUS_FILE


def print_status(data_dir: Path) -> int:
    path = data_dir / STATUS_FILE
    if not path.exists():
        print(f"no status in {data_dir}: has the edge agent run with --data-dir {data_dir}?",
              file=sys.stderr)  # fmt: skip
        return 1
    doc = json.loads(path.read_text(encoding="utf-8"))
    age = (datetime.now(UTC) - datetime.fromisoformat(doc["time"])).total_seconds()
    state = "running" if doc["online"] and age < 30 else "stopped"
    print(f"site {doc['site']}: agent {state} (status written {age:.0f} s ago), "
          f"uplink {'connected' if doc.get('uplink_connected') else 'not connected'}")  # fmt: skip
    print(f"outbox: {doc['outbox_messages']} message(s), {doc['outbox_bytes']} bytes; "
          f"telemetry samples dropped: {doc['dropped_telemetry_samples']}; "
          f"dead letters: {doc['dead_letters']}")  # fmt: skip
    print(f"{'device':<20} {'comm':<8} {'polls':>8} {'errors':>7}  last ok / last error")
    for name, h in sorted(doc["devices"].items()):
        last = h.get("last_ok") or "-"
        print(f"{name:<20} {h['comm']:<8} {h['polls']:>8} {h['errors']:>7}  {last}")
        if h.get("last_error"):
            print(f"{'':<20} {'':<8} {'':>8} {'':>7}  {h['last_error']}")
    return 0
