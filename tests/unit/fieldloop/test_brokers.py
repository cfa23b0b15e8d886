"""Broker URLs: TLS files as query parameters, each mistake named, no password in an error."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldloop.brokers import parse_broker_url


@pytest.fixture
def pem(tmp_path: Path) -> Path:
    for name in ("ca.crt", "site.crt", "site.key"):
        (tmp_path / name).write_text("-----BEGIN-----\n", encoding="utf-8")
    return tmp_path


def test_plain_and_tls_addresses() -> None:
    a = parse_broker_url("mqtt://u:p%40ss@broker:1884")
    assert (a.host, a.port, a.username, a.password, a.tls) == ("broker", 1884, "u", "p@ss", False)
    b = parse_broker_url("mqtts://broker")
    assert (b.port, b.tls, b.ca_file, b.cert_file, b.key_file) == (8883, True, None, None, None)
    assert str(parse_broker_url("mqtts://u:secret@broker")) == "mqtts://u@broker:8883"


def test_tls_files_are_taken_from_the_query(pem: Path) -> None:
    a = parse_broker_url(
        f"mqtts://site:pw@mqtt.example.com?ca={pem}/ca.crt&cert={pem}/site.crt&key={pem}/site.key"
    )
    assert (a.ca_file, a.cert_file, a.key_file) == (
        f"{pem}/ca.crt",
        f"{pem}/site.crt",
        f"{pem}/site.key",
    )


@pytest.mark.parametrize(
    ("query", "problem"),
    [
        ("cafile={d}/ca.crt", "unknown parameter 'cafile' (ca, cert, key)"),
        ("ca={d}/ca.crt&ca={d}/ca.crt", "ca given twice"),
        ("ca={d}/missing.crt", "ca file '{d}/missing.crt' does not exist"),
        ("cert={d}/site.crt", "a client certificate needs both cert= and key="),
        ("key={d}/site.key", "a client certificate needs both cert= and key="),
        ("ca", "cannot read 'ca' as name=value"),
    ],
)
def test_each_mistake_is_named_without_the_password(pem: Path, query: str, problem: str) -> None:
    with pytest.raises(ValueError, match=r"^broker URL broker:8883") as exc:
        parse_broker_url(f"mqtts://site:s3cret@broker:8883?{query.format(d=pem)}")
    assert problem.format(d=pem) in str(exc.value)
    assert "s3cret" not in str(exc.value)


def test_tls_files_need_tls(pem: Path) -> None:
    with pytest.raises(ValueError, match="ca= needs TLS: write mqtts://"):
        parse_broker_url(f"mqtt://broker?ca={pem}/ca.crt")
