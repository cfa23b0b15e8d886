"""Broker addresses: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` for TLS."""

from __future__ import annotations

import socket
from dataclasses import dataclass
from urllib.parse import unquote, urlsplit


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False

    def __str__(self) -> str:  # never print the password
        user = f"{self.username}@" if self.username else ""
        return f"{'mqtts' if self.tls else 'mqtt'}://{user}{self.host}:{self.port}"


def parse_broker_url(url: str) -> BrokerAddress:
    parts = urlsplit(url if "://" in url else f"mqtt://{url}")
    if parts.scheme not in ("mqtt", "mqtts", "tcp"):
        raise ValueError(f"broker URL {url!r}: scheme must be mqtt:// or mqtts://")
    if not parts.hostname:
        raise ValueError(f"broker URL {url!r} has no host; write it like mqtt://127.0.0.1:1883")
    try:
        port = parts.port
    except ValueError as exc:
        raise ValueError(f"broker URL {url!r}: {exc}") from None
    tls = parts.scheme == "mqtts"
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
    )


def client_kwargs(address: BrokerAddress) -> dict[str, object]:
    """Keyword arguments for ``aiomqtt.Client`` (kept here so edge and central agree)."""
    kwargs: dict[str, object] = {
        "hostname": address.host,
        "port": address.port,
        # Without TCP_NODELAY each QoS 1 publish waits ~40 ms for its PUBACK (Nagle against
        # delayed ACK): that alone would cap central at ~25 events/s.
        "socket_options": [(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)],
    }
    if address.username:
        kwargs["username"] = address.username
        kwargs["password"] = address.password
    if address.tls:
        import ssl

        kwargs["tls_context"] = ssl.create_default_context()
    return kwargs
