"""edge_agent.decoding: read plans (request coalescing) and block decoding."""

from __future__ import annotations

import random
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from edge_agent.decoding import (
    MAX_BITS,
    MAX_REGISTERS,
    Block,
    _decode_each,
    decode_block,
    latest_values,
    plan_reads,
    quality_of,
)
from edge_agent.readings import Reading
from fieldloop.profiles import DeviceProfile, Table, load_profile
from fieldloop.registers import DecodeError

REPO = Path(__file__).resolve().parents[3]
CHILLER = REPO / "device_profiles" / "chiller.yaml"
T0 = datetime(2024, 5, 1, 8, 30, 0, tzinfo=UTC)


def make_profile(resources: list[dict[str, Any]]) -> DeviceProfile:
    return DeviceProfile.model_validate(
        {"apiVersion": "fieldloop/v1", "kind": "DeviceProfile", "name": "t", "resources": resources}
    )


def res(name: str, address: int, type_: str = "int16", table: str = "holding_registers", **kw):
    return {"name": name, "table": table, "address": address, "type": type_, **kw}


@pytest.fixture(scope="module")
def chiller() -> DeviceProfile:
    return load_profile(CHILLER)


def decode(block: Block, data):
    return decode_block(block, data, device="chiller-1", asset="CH-01", time=T0)


# ---------------------------------------------------------------- plan_reads


def test_chiller_profile_reads_in_exactly_two_blocks(chiller):
    blocks = plan_reads(chiller)
    assert [(b.table, b.address, b.count) for b in blocks] == [
        (Table.input_registers, 0, 5),
        (Table.holding_registers, 0, 2),
    ]
    assert [r.name for r in blocks[0].resources] == [
        "supply_water_temp",
        "return_water_temp",
        "compressor_current",
        "run_hours",
    ]
    assert [r.name for r in blocks[1].resources] == ["discharge_temp"]


def test_every_resource_is_in_exactly_one_block_and_inside_it(chiller):
    blocks = plan_reads(chiller)
    seen = [r.name for b in blocks for r in b.resources]
    assert sorted(seen) == sorted(r.name for r in chiller.resources)
    for b in blocks:
        for r in b.resources:
            assert r.table is b.table
            assert b.address <= r.address
            assert r.address + r.count <= b.address + b.count


def test_gap_of_max_gap_is_read_through():
    # a at 0 (ends at 1); b at 9 leaves 8 unused registers (1..8)
    profile = make_profile([res("a", 0), res("b", 9)])
    blocks = plan_reads(profile, max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 10)]


def test_gap_larger_than_max_gap_splits_blocks():
    profile = make_profile([res("a", 0), res("b", 10)])  # 9 unused registers
    blocks = plan_reads(profile, max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 1), (10, 1)]
    assert [[r.name for r in b.resources] for b in blocks] == [["a"], ["b"]]


def test_max_gap_zero_only_merges_adjacent_resources():
    profile = make_profile([res("a", 0), res("b", 1, "uint32"), res("c", 4)])
    blocks = plan_reads(profile, max_gap=0)
    assert [(b.address, b.count) for b in blocks] == [(0, 3), (4, 1)]


def test_gap_is_measured_from_the_end_of_multi_register_values():
    # a float64 at 0 occupies 0..3; c at 6 leaves a gap of 2 (registers 4, 5)
    profile = make_profile([res("a", 0, "float64"), res("c", 6)])
    assert [(b.address, b.count) for b in plan_reads(profile, max_gap=2)] == [(0, 7)]
    assert [(b.address, b.count) for b in plan_reads(profile, max_gap=1)] == [(0, 4), (6, 1)]


def test_resources_are_planned_in_address_order_whatever_the_profile_order():
    profile = make_profile([res("c", 20), res("a", 0), res("b", 3)])
    blocks = plan_reads(profile, max_gap=8)
    assert [(b.address, b.count) for b in blocks] == [(0, 4), (20, 1)]
    assert [r.name for r in blocks[0].resources] == ["a", "b"]


def test_tables_are_never_mixed_in_one_block():
    profile = make_profile(
        [
            res("h", 0, table="holding_registers"),
            res("i", 1, table="input_registers"),
            res("c", 0, "bool", table="coils"),
            res("d", 0, "bool", table="discrete_inputs"),
        ]
    )
    blocks = plan_reads(profile)
    assert [(b.table, b.address, b.count) for b in blocks] == [
        (Table.coils, 0, 1),
        (Table.discrete_inputs, 0, 1),
        (Table.input_registers, 1, 1),
        (Table.holding_registers, 0, 1),
    ]


def test_contiguous_int16_resources_split_at_125_registers():
    profile = make_profile([res(f"r{i}", i) for i in range(300)])
    blocks = plan_reads(profile)
    assert MAX_REGISTERS == 125
    assert [(b.address, b.count) for b in blocks] == [(0, 125), (125, 125), (250, 50)]
    assert sum(len(b.resources) for b in blocks) == 300


def test_multi_register_value_is_never_split_across_blocks():
    # 63 uint32 at 0, 2, 4, ...: 62 fit in 124 registers, the 63rd would end at 126
    profile = make_profile([res(f"r{i}", 2 * i, "uint32") for i in range(63)])
    blocks = plan_reads(profile)
    assert [(b.address, b.count) for b in blocks] == [(0, 124), (124, 2)]
    for b in blocks:
        assert b.count <= MAX_REGISTERS
        for r in b.resources:
            assert b.address <= r.address
            assert r.address + r.count <= b.address + b.count


def test_blocks_with_gaps_and_mixed_sizes_stay_within_the_limit():
    resources = []
    addr = 0
    for i in range(200):
        type_ = ("int16", "float32", "float64", "uint32")[i % 4]
        resources.append(res(f"r{i}", addr, type_))
        addr += {"int16": 1, "float32": 2, "float64": 4, "uint32": 2}[type_] + (i % 5)
    profile = make_profile(resources)
    blocks = plan_reads(profile, max_gap=8)
    assert len(blocks) > 1
    assert all(b.count <= MAX_REGISTERS for b in blocks)
    assert sum(len(b.resources) for b in blocks) == 200
    for b in blocks:
        first, last = b.resources[0], b.resources[-1]
        assert b.address == first.address
        assert b.address + b.count == last.address + last.count


def test_string_of_125_registers_is_one_block():
    profile = make_profile([res("sn", 10, "string", length=125)])
    assert [(b.address, b.count) for b in plan_reads(profile)] == [(10, 125)]


def test_coils_are_coalesced_up_to_2000_bits():
    profile = make_profile([res(f"c{i}", i, "bool", table="coils") for i in range(2001)])
    blocks = plan_reads(profile)
    assert MAX_BITS == 2000
    assert [(b.table, b.address, b.count) for b in blocks] == [
        (Table.coils, 0, 2000),
        (Table.coils, 2000, 1),
    ]


# ---------------------------------------------------------------- decode_block


def test_decode_chiller_input_block_applies_scale(chiller):
    block = plan_reads(chiller)[0]
    # supply -123 (0xFF85) -> -12.3; return 125 -> 12.5; current 0x0BB8 = 3000 -> 300.0 A;
    # run hours uint32 [0x0001, 0x0002] = 65538
    readings, problems = decode(block, [0xFF85, 125, 0x0BB8, 0x0001, 0x0002])
    assert problems == []
    by_metric = {r.metric: r for r in readings}
    assert list(by_metric) == [
        "supply_water_temp",
        "return_water_temp",
        "compressor_current",
        "run_hours",
    ]
    assert by_metric["supply_water_temp"].value == pytest.approx(-12.3)
    assert by_metric["supply_water_temp"].quality == "bad"  # below min -10
    assert by_metric["return_water_temp"].value == pytest.approx(12.5)
    assert by_metric["return_water_temp"].quality == "good"
    assert by_metric["compressor_current"].value == pytest.approx(300.0)
    assert by_metric["compressor_current"].quality == "good"
    assert by_metric["run_hours"].value == 65538.0
    assert by_metric["run_hours"].quality == "good"
    for r in readings:
        assert (r.device, r.asset, r.time) == ("chiller-1", "CH-01", T0)
        assert isinstance(r.value, float)


def test_decode_chiller_float32_block(chiller):
    block = plan_reads(chiller)[1]
    readings, problems = decode(block, [0x42F6, 0xE979])  # 123.456
    assert problems == []
    assert readings == [
        Reading(
            "chiller-1",
            "CH-01",
            "discharge_temp",
            T0,
            pytest.approx(123.456, rel=1e-6),
            "good",
        )
    ]


@pytest.mark.parametrize(
    ("registers", "quality"),
    [
        ([0x42F6, 0xE979], "good"),  # 123.456
        ([0x4320, 0x0000], "good"),  # 160.0 == max: inclusive
        ([0x4320, 0x0001], "bad"),  # just above 160
        ([0xC1A0, 0x0000], "good"),  # -20.0 == min: inclusive
        ([0xC1A8, 0x0000], "bad"),  # -21.0
        ([0x447A, 0x0000], "bad"),  # 1000.0
    ],
)
def test_out_of_range_readings_are_bad(chiller, registers, quality):
    block = plan_reads(chiller)[1]
    readings, problems = decode(block, registers)
    assert problems == []
    assert len(readings) == 1
    assert readings[0].quality == quality


def test_range_check_is_on_the_scaled_value(chiller):
    block = plan_reads(chiller)[0]
    # supply 401 raw -> 40.1 degC > max 40: bad although 401 itself looks harmless
    readings, _ = decode(block, [401, 0, 0, 0, 0])
    assert readings[0].metric == "supply_water_temp"
    assert readings[0].value == pytest.approx(40.1)
    assert readings[0].quality == "bad"


def test_scale_and_offset_together():
    profile = make_profile([res("t", 0, "uint16", scale=0.5, offset=-40.0, min=-40, max=100)])
    (block,) = plan_reads(profile)
    readings, problems = decode(block, [130])
    assert problems == []
    assert readings[0].value == pytest.approx(25.0)
    assert readings[0].quality == "good"
    readings, _ = decode(block, [300])  # 110 > 100
    assert readings[0].value == pytest.approx(110.0)
    assert readings[0].quality == "bad"


def test_byte_and_word_order_come_from_the_profile():
    profile = make_profile(
        [
            res("a", 0, "float32", byte_order="little", word_order="little"),
            res("b", 2, "float32", word_order="little"),
        ]
    )
    (block,) = plan_reads(profile)
    readings, problems = decode(block, [0x79E9, 0xF642, 0xE979, 0x42F6])
    assert problems == []
    assert [r.value for r in readings] == [
        pytest.approx(123.456, rel=1e-6),
        pytest.approx(123.456, rel=1e-6),
    ]


def test_values_within_a_gap_are_ignored():
    profile = make_profile([res("a", 0), res("b", 5)])
    (block,) = plan_reads(profile)
    assert block.count == 6
    readings, problems = decode(block, [7, 0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF, 9])
    assert problems == []
    assert [(r.metric, r.value) for r in readings] == [("a", 7.0), ("b", 9.0)]


def test_block_not_starting_at_zero_is_indexed_from_its_address():
    profile = make_profile([res("a", 100), res("b", 102, "int32")])
    (block,) = plan_reads(profile)
    assert block.address == 100
    readings, _ = decode(block, [5, 0, 0xFFFF, 0xFFFE])
    assert [(r.metric, r.value) for r in readings] == [("a", 5.0), ("b", -2.0)]


def test_nan_float_is_a_problem_not_a_reading(chiller):
    block = plan_reads(chiller)[1]
    readings, problems = decode(block, [0x7FC0, 0x0000])
    assert readings == []
    assert len(problems) == 1
    assert problems[0].startswith("discharge_temp: ")


def test_nan_does_not_hide_the_other_resources_of_the_block():
    profile = make_profile([res("x", 0, "float32"), res("y", 2, "float32"), res("z", 4)])
    (block,) = plan_reads(profile)
    readings, problems = decode(block, [0x3F80, 0x0000, 0x7F80, 0x0000, 42])
    assert [(r.metric, r.value) for r in readings] == [("x", 1.0), ("z", 42.0)]
    assert len(problems) == 1
    assert problems[0].startswith("y: ")


def test_value_that_scales_to_infinity_is_a_problem():
    profile = make_profile([res("big", 0, "float32", scale=1e300)])
    (block,) = plan_reads(profile)
    readings, problems = decode(block, [0x7F7F, 0xFFFF])  # float32 max, ~3.4e38
    assert readings == []
    assert len(problems) == 1
    assert problems[0].startswith("big: ")


def test_too_short_data_raises_decode_error(chiller):
    block = plan_reads(chiller)[0]
    with pytest.raises(DecodeError, match="expected 5"):
        decode(block, [0, 0, 0, 0])
    with pytest.raises(DecodeError):
        decode(block, [])


def test_extra_data_beyond_the_block_is_ignored(chiller):
    block = plan_reads(chiller)[1]
    readings, problems = decode(block, [0x3F80, 0x0000, 0x7FC0, 0x0000])
    assert problems == []
    assert [r.value for r in readings] == [1.0]


def test_out_of_range_register_value_is_a_problem():
    profile = make_profile([res("a", 0, "uint16"), res("b", 1, "uint16")])
    (block,) = plan_reads(profile)
    readings, problems = decode(block, [70000, 3])
    assert [(r.metric, r.value) for r in readings] == [("b", 3.0)]
    assert len(problems) == 1
    assert problems[0].startswith("a: ")


def test_string_resources_produce_no_reading_and_no_problem():
    profile = make_profile([res("serial", 0, "string", length=2), res("t", 2)])
    (block,) = plan_reads(profile)
    readings, problems = decode(block, [0x534E, 0x3031, 17])
    assert problems == []
    assert [(r.metric, r.value) for r in readings] == [("t", 17.0)]


def test_bit_blocks_decode_to_one_and_zero():
    profile = make_profile(
        [
            res("running", 0, "bool", table="discrete_inputs", min=0, max=1),
            res("alarm", 1, "bool", table="discrete_inputs"),
            res("remote", 4, "bool", table="discrete_inputs"),
        ]
    )
    (block,) = plan_reads(profile)
    assert (block.table, block.address, block.count) == (Table.discrete_inputs, 0, 5)
    readings, problems = decode(block, [True, False, True, True, 1])
    assert problems == []
    assert [(r.metric, r.value, r.quality) for r in readings] == [
        ("running", 1.0, "good"),
        ("alarm", 0.0, "good"),
        ("remote", 1.0, "good"),
    ]


def test_short_bit_data_raises():
    profile = make_profile(
        [res("c0", 0, "bool", table="coils"), res("c3", 3, "bool", table="coils")]
    )
    (block,) = plan_reads(profile)
    with pytest.raises(DecodeError):
        decode(block, [True, False])


# ---------------------------------------------------------------- helpers


def test_quality_of_without_limits_is_always_good():
    profile = make_profile([res("a", 0)])
    r = profile.resources[0]
    assert quality_of(r, -1e30) == "good"
    assert quality_of(r, 1e30) == "good"


def test_quality_of_with_only_a_minimum(chiller):
    run_hours = chiller.resource("run_hours")  # min 0, no max
    assert quality_of(run_hours, 0.0) == "good"
    assert quality_of(run_hours, 1e12) == "good"
    assert quality_of(run_hours, -0.5) == "bad"


def test_latest_values_keeps_only_good_readings():
    readings = [
        Reading("d", "a", "x", T0, 1.0, "good"),
        Reading("d", "a", "y", T0, 2.0, "bad"),
        Reading("d", "a", "z", T0, 3.0, "uncertain"),
        Reading("d", "a", "x", T0, 4.0, "good"),
    ]
    assert dict(latest_values(readings)) == {"x": 4.0}


# ---------------------------------------------------------------- compiled vs reference


def _random_profile(rng: random.Random) -> DeviceProfile:
    kinds = ["int16", "uint16", "int32", "uint32", "int64", "uint64", "float32", "float64"]
    resources, address = [], rng.randrange(0, 50)
    for i in range(rng.randrange(1, 12)):
        type_ = rng.choice([*kinds, "string"])
        extra: dict[str, Any] = {
            "byte_order": rng.choice(["big", "little"]),
            "word_order": rng.choice(["big", "little"]),
        }
        if type_ == "string":
            extra = {"length": rng.randrange(1, 4)}
        elif rng.random() < 0.5:
            extra |= {"scale": rng.choice([0.1, 0.5, 2.0, 1e-3]), "offset": rng.uniform(-50, 50)}
        if type_ != "string" and rng.random() < 0.4:
            extra |= {"min": -1000.0, "max": 1000.0}
        resources.append(res(f"m{i}", address, type_, **extra))
        address += {"int16": 1, "uint16": 1, "int32": 2, "uint32": 2, "float32": 2}.get(
            type_, 4 if type_ != "string" else extra["length"]
        ) + rng.choice([0, 0, 0, 1, 3])
    return make_profile(resources)


def test_compiled_decoding_agrees_with_the_reference_codec_on_random_profiles():
    """Every type, byte order and word order (ABCD, DCBA, CDAB, BADC), scale, offset, range and
    NaN/infinity pattern: the compiled block decoder gives exactly what the per-value reference
    codec gives."""
    rng = random.Random(20261130)
    specials = [0x7FC0, 0x7F80, 0xFF80, 0x7FF8, 0x7FF0, 0x0000, 0xFFFF, 0x8000]
    for _ in range(400):
        profile = _random_profile(rng)
        for block in plan_reads(profile):
            for _ in range(5):
                data = [
                    rng.choice(specials) if rng.random() < 0.2 else rng.randrange(0x10000)
                    for _ in range(block.count)
                ]
                fast = decode_block(block, data, device="d", asset="a", time=T0)
                slow = _decode_each(block, data, "d", "a", T0)
                assert fast == slow, (profile.model_dump(), data)
