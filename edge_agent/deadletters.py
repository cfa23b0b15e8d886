"""The edge's dead-letter file: device input we could not accept, with the reason, one JSON line
each, so nothing a device sent disappears silently and a technician can see why. Rotated at
``max_bytes`` (one previous file is kept as ``.1``)."""

from __future__ import annotations

import base64
import json
import os
from datetime import datetime
from pathlib import Path

KEEP_PAYLOAD = 4096  # bytes of the payload kept in the record


class DeadLetterFile:
    def __init__(self, path: Path, max_bytes: int = 10 << 20) -> None:
        self.path = path
        self.max_bytes = max_bytes
        self.count = 0
        path.parent.mkdir(parents=True, exist_ok=True)

    def add(
        self, *, time: datetime, source: str, device: str | None, topic: str | None,
        reason: str, payload: bytes,
    ) -> None:  # fmt: skip
        try:
            text: str | None = payload[:KEEP_PAYLOAD].decode("utf-8")
            encoded = None
        except UnicodeDecodeError:
            text, encoded = None, base64.b64encode(payload[:KEEP_PAYLOAD]).decode()
        record = {
            "time": time.isoformat(),
            "source": source,
            "device": device,
            "topic": topic,
            "reason": reason,
            "size": len(payload),
            "payload": text,
            "payload_b64": encoded,
            "truncated": len(payload) > KEEP_PAYLOAD,
        }
        line = (json.dumps(record, ensure_ascii=False) + "\n").encode()
        if self.path.exists() and self.path.stat().st_size + len(line) > self.max_bytes:
            os.replace(self.path, self.path.with_name(self.path.name + ".1"))
        with self.path.open("ab") as f:
            f.write(line)
        self.count += 1

    def read(self) -> list[dict[str, object]]:
        if not self.path.exists():
            return []
        return [json.loads(x) for x in self.path.read_text(encoding="utf-8").splitlines() if x]
