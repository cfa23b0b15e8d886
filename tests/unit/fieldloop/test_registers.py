"""fieldloop.registers: the Modbus register codec.

Every expected register list below is written out by hand from the IEEE 754 / two's complement
bit patterns, never computed with the code under test.
"""

from __future__ import annotations

import math

import pytest

from fieldloop.registers import (
    DecodeError,
    Order,
    RawType,
    decode,
    encode,
    register_count,
    to_engineering,
    to_raw,
)

BIG, LITTLE = Order.big, Order.little

# (raw_type, value, {(byte_order, word_order): registers})
# float32 123.456 = 0x42F6E979, float64 123.456 = 0x405EDD2F1A9FBE77,
# int32 0x12345678, uint32 0xDEADBEEF, int64 0x0001020304050607, uint64 0x000FEDCBA9876543.
ORDER_VECTORS: list[tuple[RawType, int | float, dict[tuple[Order, Order], list[int]]]] = [
    (
        RawType.float32,
        123.456,
        {
            (BIG, BIG): [0x42F6, 0xE979],
            (BIG, LITTLE): [0xE979, 0x42F6],
            (LITTLE, BIG): [0xF642, 0x79E9],
            (LITTLE, LITTLE): [0x79E9, 0xF642],
        },
    ),
    (
        RawType.float64,
        123.456,
        {
            (BIG, BIG): [0x405E, 0xDD2F, 0x1A9F, 0xBE77],
            (BIG, LITTLE): [0xBE77, 0x1A9F, 0xDD2F, 0x405E],
            (LITTLE, BIG): [0x5E40, 0x2FDD, 0x9F1A, 0x77BE],
            (LITTLE, LITTLE): [0x77BE, 0x9F1A, 0x2FDD, 0x5E40],
        },
    ),
    (
        RawType.int32,
        0x12345678,
        {
            (BIG, BIG): [0x1234, 0x5678],
            (BIG, LITTLE): [0x5678, 0x1234],
            (LITTLE, BIG): [0x3412, 0x7856],
            (LITTLE, LITTLE): [0x7856, 0x3412],
        },
    ),
    (
        RawType.int32,
        -100000,  # 0xFFFE7960
        {
            (BIG, BIG): [0xFFFE, 0x7960],
            (BIG, LITTLE): [0x7960, 0xFFFE],
            (LITTLE, BIG): [0xFEFF, 0x6079],
            (LITTLE, LITTLE): [0x6079, 0xFEFF],
        },
    ),
    (
        RawType.uint32,
        0xDEADBEEF,
        {
            (BIG, BIG): [0xDEAD, 0xBEEF],
            (BIG, LITTLE): [0xBEEF, 0xDEAD],
            (LITTLE, BIG): [0xADDE, 0xEFBE],
            (LITTLE, LITTLE): [0xEFBE, 0xADDE],
        },
    ),
    (
        RawType.int64,
        0x0001020304050607,
        {
            (BIG, BIG): [0x0001, 0x0203, 0x0405, 0x0607],
            (BIG, LITTLE): [0x0607, 0x0405, 0x0203, 0x0001],
            (LITTLE, BIG): [0x0100, 0x0302, 0x0504, 0x0706],
            (LITTLE, LITTLE): [0x0706, 0x0504, 0x0302, 0x0100],
        },
    ),
    (
        RawType.uint64,
        0x000FEDCBA9876543,
        {
            (BIG, BIG): [0x000F, 0xEDCB, 0xA987, 0x6543],
            (BIG, LITTLE): [0x6543, 0xA987, 0xEDCB, 0x000F],
            (LITTLE, BIG): [0x0F00, 0xCBED, 0x87A9, 0x4365],
            (LITTLE, LITTLE): [0x4365, 0x87A9, 0xCBED, 0x0F00],
        },
    ),
    (
        RawType.int16,
        -123,  # 0xFF85
        {
            (BIG, BIG): [0xFF85],
            (BIG, LITTLE): [0xFF85],  # one register: word order is irrelevant
            (LITTLE, BIG): [0x85FF],
            (LITTLE, LITTLE): [0x85FF],
        },
    ),
    (
        RawType.uint16,
        0xABCD,
        {
            (BIG, BIG): [0xABCD],
            (BIG, LITTLE): [0xABCD],
            (LITTLE, BIG): [0xCDAB],
            (LITTLE, LITTLE): [0xCDAB],
        },
    ),
]

ORDER_CASES = [
    pytest.param(t, value, bo, wo, regs, id=f"{t}-{value}-byte_{bo}-word_{wo}")
    for t, value, by_order in ORDER_VECTORS
    for (bo, wo), regs in by_order.items()
]


# ---------------------------------------------------------------- known vectors, all orders


@pytest.mark.parametrize(
    ("raw_type", "value", "byte_order", "word_order", "registers"), ORDER_CASES
)
def test_decode_known_vector(raw_type, value, byte_order, word_order, registers):
    got = decode(registers, raw_type, byte_order, word_order)
    if raw_type in (RawType.float32, RawType.float64):
        assert isinstance(got, float)
        rel = 1e-6 if raw_type is RawType.float32 else 1e-15
        assert got == pytest.approx(value, rel=rel)
    else:
        assert isinstance(got, int)
        assert got == value


@pytest.mark.parametrize(
    ("raw_type", "value", "byte_order", "word_order", "registers"), ORDER_CASES
)
def test_encode_known_vector(raw_type, value, byte_order, word_order, registers):
    assert encode(value, raw_type, byte_order, word_order) == registers


def test_default_orders_are_big_big():
    assert decode([0x42F6, 0xE979], RawType.float32) == pytest.approx(123.456, rel=1e-6)
    assert encode(123.456, RawType.float32) == [0x42F6, 0xE979]


def test_float32_decoded_value_is_the_single_precision_value():
    # 0x42F6E979 is the float32 nearest 123.456, i.e. 123.45600128173828 exactly
    assert decode([0x42F6, 0xE979], RawType.float32) == 123.45600128173828


@pytest.mark.parametrize(
    ("registers", "expected"),
    [
        ([0x0000], 0),
        ([0x0001], 1),
        ([0x7FFF], 32767),
        ([0x8000], -32768),
        ([0xFFFF], -1),
        ([0xFF85], -123),
    ],
)
def test_int16_two_complement(registers, expected):
    assert decode(registers, RawType.int16) == expected
    assert encode(expected, RawType.int16) == registers


@pytest.mark.parametrize(
    ("registers", "expected"),
    [([0x0000], 0), ([0x8000], 32768), ([0xFFFF], 65535), ([0xFF85], 65413)],
)
def test_uint16_is_unsigned(registers, expected):
    assert decode(registers, RawType.uint16) == expected
    assert encode(expected, RawType.uint16) == registers


@pytest.mark.parametrize(
    ("raw_type", "registers", "expected"),
    [
        (RawType.int32, [0xFFFF, 0xFFFE], -2),
        (RawType.int32, [0x8000, 0x0000], -(2**31)),
        (RawType.int32, [0x7FFF, 0xFFFF], 2**31 - 1),
        (RawType.uint32, [0xFFFF, 0xFFFF], 2**32 - 1),
        (RawType.uint32, [0x0001, 0x0000], 65536),
        (RawType.int64, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], -1),
        (RawType.int64, [0x8000, 0x0000, 0x0000, 0x0000], -(2**63)),
        (RawType.int64, [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**63 - 1),
        (RawType.int64, [0x0102, 0x0304, 0x0506, 0x0708], 0x0102030405060708),
        (RawType.uint64, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF], 2**64 - 1),
        (RawType.uint64, [0xFEDC, 0xBA98, 0x7654, 0x3210], 18364758544493064720),
        (RawType.float32, [0x3F80, 0x0000], 1.0),
        (RawType.float32, [0xBFC0, 0x0000], -1.5),
        (RawType.float32, [0x0000, 0x0000], 0.0),
        (RawType.float64, [0x3FF0, 0x0000, 0x0000, 0x0000], 1.0),
        (RawType.float64, [0xC004, 0x0000, 0x0000, 0x0000], -2.5),
    ],
)
def test_decode_multi_register_values(raw_type, registers, expected):
    got = decode(registers, raw_type)
    assert got == expected
    assert type(got) is type(expected)


def test_int64_extremes_encode():
    assert encode(-1, RawType.int64) == [0xFFFF] * 4
    assert encode(-(2**63), RawType.int64) == [0x8000, 0, 0, 0]
    assert encode(2**64 - 1, RawType.uint64) == [0xFFFF] * 4


# ---------------------------------------------------------------- strings


def test_string_encode_pads_with_nul_and_decode_strips_it():
    regs = encode("ABC", RawType.string, length=3)
    assert regs == [0x4142, 0x4300, 0x0000]
    assert decode(regs, RawType.string) == "ABC"


def test_string_encode_truncates_to_length():
    assert encode("ABCDEF", RawType.string, length=2) == [0x4142, 0x4344]


def test_string_byte_order_little_swaps_characters_in_each_register():
    regs = encode("SN01", RawType.string, byte_order=LITTLE, length=2)
    assert regs == [0x4E53, 0x3130]  # "NS", "10" on the wire
    assert decode(regs, RawType.string, byte_order=LITTLE) == "SN01"
    assert decode([0x4E53, 0x3130], RawType.string) == "NS10"


def test_string_word_order_little_reverses_registers():
    regs = encode("SN01", RawType.string, word_order=LITTLE, length=2)
    assert regs == [0x3031, 0x534E]
    assert decode(regs, RawType.string, word_order=LITTLE) == "SN01"


def test_string_decode_uses_every_register_given():
    # a string takes its length from the registers handed over
    assert decode([0x4869], RawType.string) == "Hi"
    assert decode([0x4869, 0x2100, 0x0000, 0x0000], RawType.string) == "Hi!"


def test_string_encode_needs_length():
    with pytest.raises(ValueError, match="length"):
        encode("x", RawType.string)


def test_string_decode_of_no_registers_is_an_error():
    with pytest.raises(DecodeError):
        decode([], RawType.string)


# ---------------------------------------------------------------- round trips


@pytest.mark.parametrize("byte_order", list(Order))
@pytest.mark.parametrize("word_order", list(Order))
@pytest.mark.parametrize(
    ("raw_type", "value"),
    [
        (RawType.int16, -32768),
        (RawType.int16, -1),
        (RawType.int16, 12345),
        (RawType.uint16, 0),
        (RawType.uint16, 65535),
        (RawType.int32, -(2**31)),
        (RawType.int32, 2**31 - 1),
        (RawType.int32, -7),
        (RawType.uint32, 0),
        (RawType.uint32, 2**32 - 1),
        (RawType.uint32, 3_600_123),
        (RawType.int64, -(2**63)),
        (RawType.int64, -123_456_789_012),
        (RawType.int64, 2**52 + 3),
        (RawType.uint64, 0),
        (RawType.uint64, 2**53),
        (RawType.float32, 1.5),
        (RawType.float32, -0.25),
        (RawType.float32, 3.0e38),
        (RawType.float64, 123.456),
        (RawType.float64, -1.0e-300),
        (RawType.float64, 1.7e308),
    ],
)
def test_encode_decode_round_trip(raw_type, value, byte_order, word_order):
    regs = encode(value, raw_type, byte_order, word_order)
    assert len(regs) == register_count(raw_type)
    assert all(0 <= r <= 0xFFFF for r in regs)
    got = decode(regs, raw_type, byte_order, word_order)
    if raw_type is RawType.float32:
        assert got == pytest.approx(value, rel=1e-7)
    else:
        assert got == value


def test_float32_round_trip_is_exact_for_representable_values():
    for value in (0.5, -2.0, 1024.125, 95.5):
        assert decode(encode(value, RawType.float32), RawType.float32) == value


@pytest.mark.parametrize("byte_order", list(Order))
@pytest.mark.parametrize("word_order", list(Order))
def test_string_round_trip(byte_order, word_order):
    regs = encode("CH-01/A", RawType.string, byte_order, word_order, length=6)
    assert len(regs) == 6
    assert decode(regs, RawType.string, byte_order, word_order) == "CH-01/A"


def test_mismatched_orders_do_not_round_trip():
    regs = encode(123.456, RawType.float32, BIG, LITTLE)
    assert decode(regs, RawType.float32, BIG, BIG) != pytest.approx(123.456, rel=1e-3)


def test_encode_rounds_floats_to_nearest_integer():
    assert encode(12.6, RawType.int16) == [13]
    assert encode(-12.6, RawType.int16) == [0xFFF3]  # -13
    assert encode(99.4, RawType.uint32) == [0, 99]


# ---------------------------------------------------------------- saturation


@pytest.mark.parametrize(
    ("raw_type", "value", "registers"),
    [
        (RawType.int16, 40000, [0x7FFF]),
        (RawType.int16, -40000, [0x8000]),
        (RawType.uint16, 70000, [0xFFFF]),
        (RawType.uint16, -5, [0x0000]),
        (RawType.int32, 2**40, [0x7FFF, 0xFFFF]),
        (RawType.int32, -(2**40), [0x8000, 0x0000]),
        (RawType.uint32, 2**33, [0xFFFF, 0xFFFF]),
        (RawType.uint32, -1, [0x0000, 0x0000]),
        (RawType.int64, 2**70, [0x7FFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        (RawType.int64, -(2**70), [0x8000, 0x0000, 0x0000, 0x0000]),
        (RawType.uint64, 2**70, [0xFFFF, 0xFFFF, 0xFFFF, 0xFFFF]),
        (RawType.uint64, -1, [0x0000, 0x0000, 0x0000, 0x0000]),
    ],
)
def test_encode_saturates_out_of_range_integers(raw_type, value, registers):
    assert encode(value, raw_type) == registers


def test_saturated_values_decode_to_the_type_limits():
    assert decode(encode(1e9, RawType.int16), RawType.int16) == 32767
    assert decode(encode(-1e9, RawType.int16), RawType.int16) == -32768
    assert decode(encode(-1e9, RawType.uint32), RawType.uint32) == 0


# Large 64-bit integers go through float() in encode, which only has 53 bits of mantissa.
@pytest.mark.parametrize(
    ("raw_type", "value", "registers"),
    [
        (RawType.int64, 0x0102030405060708, [0x0102, 0x0304, 0x0506, 0x0708]),
        (RawType.uint64, 0xFEDCBA9876543210, [0xFEDC, 0xBA98, 0x7654, 0x3210]),
        (RawType.int64, 2**53 + 1, [0x0020, 0x0000, 0x0000, 0x0001]),
    ],
)
def test_encode_keeps_full_64_bit_integer_precision(raw_type, value, registers):
    assert encode(value, raw_type) == registers


# ---------------------------------------------------------------- decode errors


@pytest.mark.parametrize(
    ("raw_type", "registers"),
    [
        (RawType.int16, []),
        (RawType.int16, [1, 2]),
        (RawType.uint16, [1, 2]),
        (RawType.int32, [1]),
        (RawType.uint32, [1, 2, 3]),
        (RawType.float32, [0x42F6]),
        (RawType.float32, [0x42F6, 0xE979, 0]),
        (RawType.int64, [1, 2, 3]),
        (RawType.uint64, [1, 2, 3, 4, 5]),
        (RawType.float64, [0x3FF0, 0, 0]),
    ],
)
def test_decode_wrong_register_count(raw_type, registers):
    with pytest.raises(DecodeError, match=f"{raw_type} needs {register_count(raw_type)} registers"):
        decode(registers, raw_type)


@pytest.mark.parametrize(
    ("raw_type", "registers"),
    [
        (RawType.uint16, [0x10000]),
        (RawType.int16, [-1]),
        (RawType.int32, [0, 70000]),
        (RawType.float32, [-5, 0]),
        (RawType.string, [0x4142, 0x1_0000]),
    ],
)
def test_decode_rejects_register_values_outside_16_bits(raw_type, registers):
    with pytest.raises(DecodeError, match=r"0\.\.65535"):
        decode(registers, raw_type)


@pytest.mark.parametrize(
    ("raw_type", "registers"),
    [
        (RawType.float32, [0x7FC0, 0x0000]),  # quiet NaN
        (RawType.float32, [0x7F80, 0x0001]),  # signalling NaN
        (RawType.float32, [0x7F80, 0x0000]),  # +inf
        (RawType.float32, [0xFF80, 0x0000]),  # -inf
        (RawType.float64, [0x7FF8, 0x0000, 0x0000, 0x0000]),  # NaN
        (RawType.float64, [0x7FF0, 0x0000, 0x0000, 0x0000]),  # +inf
        (RawType.float64, [0xFFF0, 0x0000, 0x0000, 0x0000]),  # -inf
    ],
)
def test_decode_rejects_non_finite_floats(raw_type, registers):
    with pytest.raises(DecodeError, match="not a reading"):
        decode(registers, raw_type)


def test_nan_word_swapped_is_still_detected():
    with pytest.raises(DecodeError):
        decode([0x0000, 0x7FC0], RawType.float32, word_order=LITTLE)
    with pytest.raises(DecodeError):
        decode([0xC07F, 0x0000], RawType.float32, byte_order=LITTLE)


def test_decode_error_is_a_value_error():
    assert issubclass(DecodeError, ValueError)


def test_encode_nan_float_produces_nan_registers_that_decode_rejects():
    regs = encode(math.nan, RawType.float32)
    assert regs[0] & 0x7F80 == 0x7F80  # exponent all ones
    with pytest.raises(DecodeError):
        decode(regs, RawType.float32)


def test_bool_is_not_a_register_type():
    with pytest.raises(ValueError, match="coils or discrete inputs"):
        decode([1], RawType.bool)
    with pytest.raises(ValueError, match="coils or discrete inputs"):
        encode(1, RawType.bool)


# ---------------------------------------------------------------- register_count


@pytest.mark.parametrize(
    ("raw_type", "count"),
    [
        (RawType.int16, 1),
        (RawType.uint16, 1),
        (RawType.int32, 2),
        (RawType.uint32, 2),
        (RawType.float32, 2),
        (RawType.int64, 4),
        (RawType.uint64, 4),
        (RawType.float64, 4),
        (RawType.bool, 1),
    ],
)
def test_register_count_fixed_types(raw_type, count):
    assert register_count(raw_type) == count


def test_register_count_string_is_its_length():
    assert register_count(RawType.string, 1) == 1
    assert register_count(RawType.string, 10) == 10


@pytest.mark.parametrize("length", [None, 0])
def test_register_count_string_without_length_is_an_error(length):
    with pytest.raises(ValueError, match="length"):
        register_count(RawType.string, length)


# ---------------------------------------------------------------- engineering units


@pytest.mark.parametrize(
    ("raw", "scale", "offset", "expected"),
    [
        (-123, 0.1, 0.0, -12.3),
        (123, 0.1, 0.0, 12.3),
        (0, 0.1, 0.0, 0.0),
        (250, 1.0, -40.0, 210.0),
        (1000, 0.01, -273.15, -263.15),
        (7, 1.0, 0.0, 7.0),
        (-5, -2.0, 1.0, 11.0),
    ],
)
def test_to_engineering(raw, scale, offset, expected):
    assert to_engineering(raw, scale, offset) == pytest.approx(expected, abs=1e-9)


def test_to_engineering_defaults_are_identity():
    assert to_engineering(42) == 42
    assert to_raw(42.0) == 42.0


@pytest.mark.parametrize(
    ("value", "scale", "offset", "expected"),
    [
        (-12.3, 0.1, 0.0, -123.0),
        (210.0, 1.0, -40.0, 250.0),
        (-263.15, 0.01, -273.15, 1000.0),
    ],
)
def test_to_raw(value, scale, offset, expected):
    assert to_raw(value, scale, offset) == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(("scale", "offset"), [(0.1, 0.0), (0.5, -20.0), (2.0, 3.5), (-0.25, 10.0)])
def test_to_raw_inverts_to_engineering(scale, offset):
    for raw in (-1000, -1, 0, 1, 37, 65535):
        assert to_raw(to_engineering(raw, scale, offset), scale, offset) == pytest.approx(raw)


def test_engineering_through_registers():
    # a supply-water temperature of -12.3 degC with scale 0.1 goes on the wire as int16 -123
    raw = round(to_raw(-12.3, 0.1))
    regs = encode(raw, RawType.int16)
    assert regs == [0xFF85]
    assert to_engineering(decode(regs, RawType.int16), 0.1) == pytest.approx(-12.3)
