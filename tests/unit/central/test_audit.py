"""central.domain.audit: the hash-chained, tamper-evident ticket history."""

from __future__ import annotations

import copy
import hashlib
import itertools
import json
from datetime import UTC, datetime, timedelta, timezone
from typing import Any

import pytest

from central.domain.audit import GENESIS, ChainBreak, canonical_entry, entry_hash, verify_chain

T0 = datetime(2024, 5, 1, 12, 0, 0, tzinfo=UTC)

Row = tuple[dict[str, Any], str, str]


def entries(n: int = 5) -> list[dict[str, Any]]:
    steps = [
        ("edge", "create", None, "new", None, {"event_id": "e-1", "value": 97.5}),
        ("王工", "accept", "new", "accepted", "我来处理", {}),
        ("王工", "complete", "accepted", "completed", "replaced sensor", {"parts": ["PT100"]}),
        ("planner", "close", "completed", "closed", None, {"verified": True}),
        ("planner", "reopen", "closed", "in_progress", "fault came back", {"n": 2}),
        ("王工", "complete", "in_progress", "completed", "ok", {}),
    ]
    out = []
    for i in range(n):
        actor, action, frm, to, note, data = steps[i % len(steps)]
        out.append(
            canonical_entry(
                ticket_id=42,
                seq=i + 1,
                at=T0 + timedelta(minutes=7 * i),
                actor=actor,
                action=action,
                from_state=frm,
                to_state=to,
                note=note,
                data=data,
            )
        )
    return out


def build_chain(items: list[dict[str, Any]]) -> list[Row]:
    rows: list[Row] = []
    prev = GENESIS
    for e in items:
        h = entry_hash(prev, e)
        rows.append((e, prev, h))
        prev = h
    return rows


def break_seqs(breaks: list[ChainBreak]) -> list[int]:
    return [b.seq for b in breaks]


# ---------------------------------------------------------------- hashing


def test_genesis_is_64_zeros():
    assert GENESIS == "0" * 64


def test_entry_hash_is_sha256_of_prev_and_canonical_json():
    entry = {"b": 1, "a": "服务中"}
    body = '{"a":"服务中","b":1}'  # sorted keys, compact, not ASCII-escaped
    expected = hashlib.sha256((GENESIS + body).encode("utf-8")).hexdigest()
    assert entry_hash(GENESIS, entry) == expected


def test_entry_hash_ignores_key_order_but_not_values():
    a = {"x": 1, "y": [1, 2]}
    b = {"y": [1, 2], "x": 1}
    assert entry_hash(GENESIS, a) == entry_hash(GENESIS, b)
    assert entry_hash(GENESIS, a) != entry_hash(GENESIS, {"x": 1, "y": [2, 1]})
    assert entry_hash(GENESIS, a) != entry_hash("1" * 64, a)


def test_entry_hash_is_hex_sha256():
    h = entry_hash(GENESIS, entries(1)[0])
    assert len(h) == 64
    int(h, 16)


def test_canonical_entry_normalises_time_to_utc_microseconds():
    cet = timezone(timedelta(hours=8))
    e = canonical_entry(
        ticket_id=1,
        seq=1,
        at=datetime(2024, 5, 1, 20, 0, tzinfo=cet),
        actor="a",
        action="create",
        from_state=None,
        to_state="new",
        note=None,
        data={"k": "v"},
    )
    assert e == {
        "ticket_id": 1,
        "seq": 1,
        "at": "2024-05-01T12:00:00.000000+00:00",
        "actor": "a",
        "action": "create",
        "from": None,
        "to": "new",
        "note": None,
        "data": {"k": "v"},
    }


def test_same_instant_in_different_zones_hashes_the_same():
    kw: dict[str, Any] = {
        "ticket_id": 1,
        "seq": 1,
        "actor": "a",
        "action": "x",
        "from_state": None,
        "to_state": None,
        "note": None,
        "data": {},
    }
    utc = canonical_entry(at=datetime(2024, 1, 1, 0, 0, tzinfo=UTC), **kw)
    shanghai = canonical_entry(
        at=datetime(2024, 1, 1, 8, 0, tzinfo=timezone(timedelta(hours=8))), **kw
    )
    assert entry_hash(GENESIS, utc) == entry_hash(GENESIS, shanghai)


def test_canonical_entry_copies_data():
    data = {"k": 1}
    e = canonical_entry(
        ticket_id=1,
        seq=1,
        at=T0,
        actor="a",
        action="x",
        from_state=None,
        to_state=None,
        note=None,
        data=data,
    )
    data["k"] = 2
    assert e["data"] == {"k": 1}


# ---------------------------------------------------------------- verification


def test_intact_chain_verifies():
    assert verify_chain(build_chain(entries(6))) == []


def test_empty_chain_verifies():
    assert verify_chain([]) == []


def test_chain_accepts_any_iterable():
    rows = build_chain(entries(3))
    assert verify_chain(iter(rows)) == []


def test_chain_links_each_entry_to_the_previous_hash():
    rows = build_chain(entries(4))
    assert rows[0][1] == GENESIS
    for (_, _, h), (_, prev, _) in itertools.pairwise(rows):
        assert prev == h
    assert len({h for _, _, h in rows}) == 4


FIELDS = ["ticket_id", "at", "actor", "action", "from", "to", "note", "data"]


@pytest.mark.parametrize("index", range(5))
@pytest.mark.parametrize("field", FIELDS)
def test_altering_any_field_of_any_entry_is_detected_at_its_seq(index, field):
    rows = build_chain(entries(5))
    entry, prev, stored = rows[index]
    tampered = copy.deepcopy(entry)
    tampered[field] = {"ticket_id": 43, "at": "2024-05-01T12:00:00.000001+00:00"}.get(
        field, "tampered"
    )
    assert tampered != entry
    rows[index] = (tampered, prev, stored)
    breaks = verify_chain(rows)
    assert breaks == [ChainBreak(index + 1, "content does not match its hash (altered)")]


@pytest.mark.parametrize("index", range(5))
def test_altering_nested_data_is_detected(index):
    rows = build_chain(entries(5))
    entry = copy.deepcopy(rows[index][0])
    entry["data"]["injected"] = 1
    rows[index] = (entry, rows[index][1], rows[index][2])
    assert break_seqs(verify_chain(rows)) == [index + 1]


def test_altering_the_seq_field_is_detected():
    rows = build_chain(entries(5))
    entry = dict(rows[2][0], seq=9)
    rows[2] = (entry, rows[2][1], rows[2][2])
    breaks = verify_chain(rows)
    assert breaks[0] == ChainBreak(9, "expected entry 3, found 9")
    assert ChainBreak(9, "content does not match its hash (altered)") in breaks


def test_rehashing_an_altered_entry_breaks_the_next_link():
    rows = build_chain(entries(5))
    entry = dict(rows[1][0], note="nothing happened")
    rows[1] = (entry, rows[1][1], entry_hash(rows[1][1], entry))  # forger recomputes its hash
    breaks = verify_chain(rows)
    assert breaks == [ChainBreak(3, "prev_hash does not match the previous entry")]


def test_altering_a_stored_hash_is_detected_there_and_at_the_next_entry():
    rows = build_chain(entries(5))
    e, prev, _ = rows[2]
    rows[2] = (e, prev, "f" * 64)
    assert verify_chain(rows) == [
        ChainBreak(3, "content does not match its hash (altered)"),
        ChainBreak(4, "prev_hash does not match the previous entry"),
    ]


def test_altering_a_stored_prev_hash_is_detected():
    rows = build_chain(entries(5))
    e, _, h = rows[0]
    rows[0] = (e, "1" * 64, h)
    assert verify_chain(rows) == [
        ChainBreak(1, "prev_hash does not match the previous entry"),
        ChainBreak(1, "content does not match its hash (altered)"),
    ]


@pytest.mark.parametrize("index", range(4))  # every entry but the last
def test_deleting_an_entry_is_detected_at_the_next_seq(index):
    rows = build_chain(entries(5))
    del rows[index]
    breaks = verify_chain(rows)
    assert breaks
    assert breaks[0].seq == index + 2
    assert ChainBreak(index + 2, "prev_hash does not match the previous entry") in breaks
    assert ChainBreak(index + 2, f"expected entry {index + 1}, found {index + 2}") in breaks


def test_deleting_the_first_entry():
    rows = build_chain(entries(4))[1:]
    assert verify_chain(rows) == [
        ChainBreak(2, "expected entry 1, found 2"),
        ChainBreak(2, "prev_hash does not match the previous entry"),
    ]


def test_deleting_the_middle_entry_breaks_only_there():
    rows = build_chain(entries(5))
    del rows[2]  # seq 3
    assert verify_chain(rows) == [
        ChainBreak(4, "expected entry 3, found 4"),
        ChainBreak(4, "prev_hash does not match the previous entry"),
    ]


def test_swapping_two_entries_is_detected():
    rows = build_chain(entries(5))
    rows[1], rows[2] = rows[2], rows[1]  # order is now seq 1, 3, 2, 4, 5
    breaks = verify_chain(rows)
    assert breaks[0] == ChainBreak(3, "expected entry 2, found 3")
    assert ChainBreak(3, "prev_hash does not match the previous entry") in breaks
    assert ChainBreak(2, "expected entry 4, found 2") in breaks
    assert ChainBreak(4, "expected entry 3, found 4") in breaks
    # the entries themselves were not altered
    assert all("altered" not in b.reason for b in breaks)


def test_reversed_chain_is_detected_at_the_first_entry():
    rows = list(reversed(build_chain(entries(4))))
    breaks = verify_chain(rows)
    assert breaks[0] == ChainBreak(4, "expected entry 1, found 4")
    assert {b.seq for b in breaks} == {1, 2, 3, 4}


def test_inserting_a_forged_entry_is_detected():
    rows = build_chain(entries(3))
    forged = dict(rows[1][0], seq=2, note="forged")
    rows.insert(1, (forged, rows[0][2], entry_hash(rows[0][2], forged)))
    breaks = verify_chain(rows)
    assert breaks
    assert breaks[0].seq == 2  # the original seq 2, now in third place


def test_a_chain_of_another_ticket_does_not_verify_as_this_one():
    ours = build_chain(entries(3))
    other_entries = [dict(e, ticket_id=99) for e in entries(3)]
    mixed = [ours[0], *build_chain(other_entries)[1:]]
    assert break_seqs(verify_chain(mixed)) == [2]


def test_entries_survive_a_json_round_trip():
    """What the database stores (JSON) must verify after it is read back."""
    rows = build_chain(entries(6))
    stored = json.dumps([[e, p, h] for e, p, h in rows], ensure_ascii=False)
    back = [(e, p, h) for e, p, h in json.loads(stored)]
    assert verify_chain(back) == []
