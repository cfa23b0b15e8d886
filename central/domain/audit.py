"""The tamper-evident record: each history entry's hash covers its content and the previous
entry's hash, so changing or deleting any entry breaks every hash after it. Pure."""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

GENESIS = "0" * 64


def entry_hash(prev_hash: str, entry: Mapping[str, Any]) -> str:
    body = json.dumps(entry, sort_keys=True, separators=(",", ":"), ensure_ascii=False, default=str)
    return hashlib.sha256((prev_hash + body).encode()).hexdigest()


def canonical_entry(
    *,
    ticket_id: int,
    seq: int,
    at: datetime,
    actor: str,
    action: str,
    from_state: str | None,
    to_state: str | None,
    note: str | None,
    data: Mapping[str, Any],
) -> dict[str, Any]:
    return {
        "ticket_id": ticket_id,
        "seq": seq,
        "at": at.astimezone(UTC).isoformat(timespec="microseconds"),
        "actor": actor,
        "action": action,
        "from": from_state,
        "to": to_state,
        "note": note,
        "data": dict(data),
    }


@dataclass(frozen=True)
class ChainBreak:
    seq: int
    reason: str


def verify_chain(entries: Iterable[tuple[dict[str, Any], str, str]]) -> list[ChainBreak]:
    """entries: (canonical entry, stored prev_hash, stored hash) in seq order."""
    breaks: list[ChainBreak] = []
    prev = GENESIS
    expected_seq = 1
    for entry, prev_hash, stored in entries:
        seq = entry["seq"]
        if seq != expected_seq:
            breaks.append(ChainBreak(seq, f"expected entry {expected_seq}, found {seq}"))
        if prev_hash != prev:
            breaks.append(ChainBreak(seq, "prev_hash does not match the previous entry"))
        if entry_hash(prev_hash, entry) != stored:
            breaks.append(ChainBreak(seq, "content does not match its hash (altered)"))
        prev = stored
        expected_seq = seq + 1
    return breaks
