"""central.domain.signatures: Stripe-style HMAC-SHA256 webhook signatures, every rejection with
its reason."""

from __future__ import annotations

import hashlib
import hmac

import pytest

from central.domain.signatures import SignatureRejected, sign, verify

SECRET = "whsec_0123456789abcdef"
OTHER = "whsec_fedcba9876543210"
BODY = '{"location": "B1 plant room", "urgency": "紧急"}'.encode()
T = 1_767_225_600  # 2026-01-01T00:00:00Z


def v1(secret: str, body: bytes, t: int) -> str:
    return hmac.new(secret.encode(), f"{t}.".encode() + body, hashlib.sha256).hexdigest()


def test_sign_is_t_and_the_hmac_of_t_dot_body() -> None:
    assert sign(SECRET, BODY, T) == f"t={T},v1={v1(SECRET, BODY, T)}"


def test_a_valid_signature_returns_its_timestamp() -> None:
    assert verify(sign(SECRET, BODY, T), BODY, [SECRET], now=T + 10) == T


def test_an_empty_body_can_be_signed() -> None:
    assert verify(sign(SECRET, b"", T), b"", [SECRET], now=T) == T


def test_a_tampered_body_is_a_mismatch() -> None:
    header = sign(SECRET, BODY, T)
    with pytest.raises(SignatureRejected, match="signature mismatch"):
        verify(header, BODY + b" ", [SECRET], now=T)


def test_a_changed_timestamp_is_a_mismatch() -> None:
    sig = v1(SECRET, BODY, T)
    with pytest.raises(SignatureRejected, match="signature mismatch"):
        verify(f"t={T + 1},v1={sig}", BODY, [SECRET], now=T)


def test_the_wrong_secret_is_a_mismatch() -> None:
    with pytest.raises(SignatureRejected, match="signature mismatch"):
        verify(sign(OTHER, BODY, T), BODY, [SECRET], now=T)


def test_during_rotation_either_secret_is_accepted() -> None:
    secrets = [OTHER, SECRET]  # new first, old still accepted
    assert verify(sign(SECRET, BODY, T), BODY, secrets, now=T) == T
    assert verify(sign(OTHER, BODY, T), BODY, secrets, now=T) == T


def test_any_of_several_v1_values_may_match() -> None:
    header = f"t={T},v1={v1(OTHER, BODY, T)},v1={v1(SECRET, BODY, T)}"
    assert verify(header, BODY, [SECRET], now=T) == T
    header = f"t={T},v1={'0' * 64},v1={'f' * 64}"
    with pytest.raises(SignatureRejected, match="signature mismatch"):
        verify(header, BODY, [SECRET], now=T)


def test_unknown_schemes_uppercase_hex_spaces_and_a_trailing_comma_are_tolerated() -> None:
    header = f" t={T} , v0=abc, v1={v1(SECRET, BODY, T).upper()} ,"
    assert verify(header, BODY, [SECRET], now=T) == T


@pytest.mark.parametrize(
    ("age", "reason"),
    [
        (301, "301 s old: 1 s outside the replay window of ±300 s"),
        (3600, "3600 s old: 3300 s outside"),
        (-301, "301 s in the future: 1 s outside"),
        (300.5, "301 s old: 1 s outside"),
    ],
)
def test_a_timestamp_outside_the_window_says_by_how_much(age: float, reason: str) -> None:
    with pytest.raises(SignatureRejected, match=reason):
        verify(sign(SECRET, BODY, T), BODY, [SECRET], now=T + age)


def test_the_window_edges_are_inside_and_the_window_is_configurable() -> None:
    header = sign(SECRET, BODY, T)
    assert verify(header, BODY, [SECRET], now=T + 300) == T
    assert verify(header, BODY, [SECRET], now=T - 300) == T
    with pytest.raises(SignatureRejected, match="outside the replay window of ±60 s"):
        verify(header, BODY, [SECRET], now=T + 61, window_s=60)


def test_a_forged_old_delivery_is_a_mismatch_not_stale() -> None:
    """The signature is checked first: "stale" is only ever said of an authentic delivery."""
    with pytest.raises(SignatureRejected, match="signature mismatch"):
        verify(sign(OTHER, BODY, T), BODY, [SECRET], now=T + 10_000)


@pytest.mark.parametrize("header", [None, "", "   "])
def test_a_missing_header_says_so(header: str | None) -> None:
    with pytest.raises(SignatureRejected, match="missing FieldLoop-Signature header"):
        verify(header, BODY, [SECRET], now=T)


GOOD = v1(SECRET, BODY, T)


@pytest.mark.parametrize(
    ("header", "reason"),
    [
        ("garbage", "'garbage' is not key=value"),
        (f"t={T},=abc", "is not key=value"),
        (f"v1={GOOD}", "no t=<unix seconds>"),
        (f"t=abc,v1={GOOD}", "t must be unix seconds, got 'abc'"),
        (f"t=-5,v1={GOOD}", "t must be unix seconds"),
        (f"t=1.5,v1={GOOD}", "t must be unix seconds"),
        (f"t=１２３,v1={GOOD}", "t must be unix seconds"),  # full-width digits
        (f"t={T},t={T},v1={GOOD}", "t is given more than once"),
        (f"t={T},v1=xyz", "v1 must be 64 hex digits"),
        (f"t={T},v1={GOOD[:-1]}", "v1 must be 64 hex digits"),
        (f"t={T},v1={GOOD},v1=", "v1 must be 64 hex digits"),
        ("t=1," + ",".join([f"v1={GOOD}"] * 9), "more than 8 v1 signatures"),
        ("t=1,v0=" + "a" * 5000, "longer than 4096 characters"),
    ],
)
def test_a_malformed_header_says_what_is_wrong(header: str, reason: str) -> None:
    with pytest.raises(SignatureRejected, match="malformed FieldLoop-Signature header") as exc:
        verify(header, BODY, [SECRET], now=T)
    assert reason in str(exc.value)


@pytest.mark.parametrize("header", [f"t={T}", f"t={T},v0={GOOD}"])
def test_a_header_without_v1_says_so(header: str) -> None:
    with pytest.raises(SignatureRejected, match="no v1 signature"):
        verify(header, BODY, [SECRET], now=T)


def test_a_long_bad_value_is_quoted_shortened() -> None:
    with pytest.raises(SignatureRejected) as exc:
        verify("x" * 500, BODY, [SECRET], now=T)
    assert len(str(exc.value)) < 120


def test_no_usable_secret_rejects_everything() -> None:
    header = sign(SECRET, BODY, T)
    with pytest.raises(SignatureRejected, match="no signing secret is configured"):
        verify(header, BODY, [], now=T)
    with pytest.raises(SignatureRejected, match="no signing secret is configured"):
        verify(header, BODY, [""], now=T)


def test_a_bare_string_is_refused_as_the_secret_list() -> None:
    with pytest.raises(TypeError):
        verify(sign(SECRET, BODY, T), BODY, SECRET, now=T)


def test_signature_rejected_is_a_value_error() -> None:
    assert issubclass(SignatureRejected, ValueError)


def test_sign_refuses_an_empty_secret_and_a_negative_time() -> None:
    with pytest.raises(ValueError, match="empty secret"):
        sign("", BODY, T)
    with pytest.raises(ValueError, match="negative"):
        sign(SECRET, BODY, -1)
