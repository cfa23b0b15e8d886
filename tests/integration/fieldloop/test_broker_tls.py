"""TLS to the broker with a private CA and client certificates, against a real Mosquitto with a
TLS listener that requires a certificate: what the deploy guide sets up for the sites."""

from __future__ import annotations

import gc
import subprocess
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import aiomqtt
import pytest
from conftest import _wait_port, free_port
from support import Processes

from fieldloop.brokers import client_kwargs, parse_broker_url

pytestmark = pytest.mark.integration


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True)


def _issue(d: Path, name: str, ca: str, ext: str) -> None:
    _openssl("req", "-new", "-nodes", "-newkey", "rsa:2048", "-subj", f"/CN={name}",
             "-keyout", f"{name}.key", "-out", f"{name}.csr", cwd=d)  # fmt: skip
    (d / f"{name}.ext").write_text(ext, encoding="utf-8")
    _openssl("x509", "-req", "-in", f"{name}.csr", "-CA", f"{ca}.crt", "-CAkey", f"{ca}.key",
             "-CAcreateserial", "-days", "2", "-sha256", "-extfile", f"{name}.ext",
             "-out", f"{name}.crt", cwd=d)  # fmt: skip


def _ca(d: Path, name: str) -> None:
    _openssl("req", "-x509", "-new", "-nodes", "-newkey", "rsa:2048", "-sha256", "-days", "2",
             "-subj", f"/CN={name}", "-keyout", f"{name}.key", "-out", f"{name}.crt",
             cwd=d)  # fmt: skip


@dataclass
class TlsBroker:
    port: int
    certs: Path

    def url(self, **files: str) -> str:
        query = "&".join(f"{k}={self.certs / v}" for k, v in files.items())
        return f"mqtts://127.0.0.1:{self.port}" + (f"?{query}" if query else "")


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[TlsBroker]:
    d = tmp_path_factory.mktemp("tls")
    _ca(d, "ca")
    _ca(d, "other-ca")
    _issue(d, "server", "ca", "subjectAltName=IP:127.0.0.1\nextendedKeyUsage=serverAuth\n")
    _issue(d, "site", "ca", "extendedKeyUsage=clientAuth\n")
    _issue(d, "stranger", "other-ca", "extendedKeyUsage=clientAuth\n")
    port = free_port()
    conf = d / "mosquitto.conf"
    conf.write_text(
        f"listener {port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
        f"cafile {d / 'ca.crt'}\ncertfile {d / 'server.crt'}\nkeyfile {d / 'server.key'}\n"
        "require_certificate true\ntls_version tlsv1.2\n"
        "user root\n"  # started as root it would drop to `mosquitto`, who cannot read tmp_path
        f"log_dest file {d / 'mosquitto.log'}\n",
        encoding="utf-8",
    )
    owned = Processes()  # module-scoped: one broker for the module's tests
    try:
        owned.popen(["mosquitto", "-c", str(conf)])
        _wait_port(port, "the TLS mosquitto")
        yield TlsBroker(port, d)
    finally:
        owned.close()


async def _round_trip(url: str) -> bytes:
    topic = f"fltest-{uuid.uuid4().hex[:8]}/tls"
    async with aiomqtt.Client(**client_kwargs(parse_broker_url(url)), timeout=5) as client:  # type: ignore[arg-type]
        await client.subscribe(topic, qos=1)
        await client.publish(topic, b"over TLS", qos=1)
        async for message in client.messages:
            return bytes(message.payload)  # type: ignore[arg-type]
    raise AssertionError("no message")


async def test_a_site_with_the_private_ca_and_its_certificate_gets_through(
    tls_broker: TlsBroker,
) -> None:
    url = tls_broker.url(ca="ca.crt", cert="site.crt", key="site.key")
    assert await _round_trip(url) == b"over TLS"


@pytest.mark.parametrize(
    ("files", "why"),
    [
        ({}, "the broker's certificate is not in the system trust store"),
        (
            {"ca": "other-ca.crt", "cert": "site.crt", "key": "site.key"},
            "a CA that did not sign it",
        ),
        ({"ca": "ca.crt"}, "no client certificate, which the broker requires"),
        ({"ca": "ca.crt", "cert": "stranger.crt", "key": "stranger.key"}, "another CA's client"),
    ],
)
# paho-mqtt leaves the socket of a failed TLS handshake to the garbage collector
@pytest.mark.filterwarnings("ignore::ResourceWarning")
@pytest.mark.filterwarnings("ignore::pytest.PytestUnraisableExceptionWarning")
async def test_everything_else_is_refused(
    tls_broker: TlsBroker, files: dict[str, str], why: str
) -> None:
    with pytest.raises(aiomqtt.MqttError):
        await _round_trip(tls_broker.url(**files))
    gc.collect()  # that socket, now, inside this test's warning filters
