"""Broker addresses: ``mqtt://[user[:password]@]host[:port]`` or ``mqtts://...`` for TLS.

A TLS address may name the files a private deployment needs, as query parameters:
``mqtts://site-plant-a:pw@mqtt.example.com:8883?ca=/etc/fieldloop/ca.crt`` (verify the broker
against this CA instead of the system trust store) and ``&cert=...&key=...`` (a client
certificate, for a broker with ``require_certificate true``)."""

from __future__ import annotations

import asyncio
import contextlib
import socket
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, TypeVar
from urllib.parse import parse_qsl, unquote, urlsplit

# an aiomqtt.Client (not imported here: the contracts need no MQTT library)
_Client = TypeVar("_Client", bound=Any)


@dataclass(frozen=True)
class BrokerAddress:
    host: str
    port: int = 1883
    username: str | None = None
    password: str | None = None
    tls: bool = False
    ca_file: str | None = None  # TLS: trust this CA (a private one), not the system store
    cert_file: str | None = None  # TLS: client certificate ...
    key_file: str | None = None  # ... and its key

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
    files = _tls_files(url, parts.query, tls)
    return BrokerAddress(
        host=parts.hostname,
        port=port or (8883 if tls else 1883),
        username=unquote(parts.username) if parts.username else None,
        password=unquote(parts.password) if parts.password else None,
        tls=tls,
        ca_file=files.get("ca"),
        cert_file=files.get("cert"),
        key_file=files.get("key"),
    )


def _tls_files(url: str, query: str, tls: bool) -> dict[str, str]:
    shown = url.split("?", 1)[0].rsplit("@", 1)[-1]  # no password in an error
    try:
        pairs = parse_qsl(query, keep_blank_values=True, strict_parsing=bool(query))
    except ValueError:
        raise ValueError(f"broker URL {shown}: cannot read {query!r} as name=value&...") from None
    files: dict[str, str] = {}
    for name, value in pairs:
        if name not in ("ca", "cert", "key"):
            raise ValueError(f"broker URL {shown}: unknown parameter {name!r} (ca, cert, key)")
        if name in files:
            raise ValueError(f"broker URL {shown}: {name} given twice")
        if not tls:
            raise ValueError(f"broker URL {shown}: {name}= needs TLS: write mqtts://")
        if not Path(value).is_file():
            raise ValueError(f"broker URL {shown}: {name} file {value!r} does not exist")
        files[name] = value
    if ("cert" in files) != ("key" in files):
        raise ValueError(f"broker URL {shown}: a client certificate needs both cert= and key=")
    return files


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

        context = ssl.create_default_context(cafile=address.ca_file)
        if address.cert_file and address.key_file:
            context.load_cert_chain(address.cert_file, address.key_file)
        kwargs["tls_context"] = context
    return kwargs


@contextlib.asynccontextmanager
async def connected(client: _Client) -> AsyncIterator[_Client]:
    """``async with client`` for an aiomqtt client, safe to cancel while it connects. aiomqtt 2.5
    cancels its connect future then, and the socket's next event calls ``exception()`` on it,
    which asyncio logs as an error with a traceback (a Ctrl-C at start-up did that). Here a
    cancelled connect is let finish (within the client's own timeout) and closed again before
    the cancellation goes on."""
    entering = asyncio.ensure_future(client.__aenter__())
    try:
        await asyncio.shield(entering)
    except asyncio.CancelledError:
        with contextlib.suppress(Exception):
            await entering
            await client.__aexit__(None, None, None)
        raise
    try:
        yield client
    finally:
        await client.__aexit__(*sys.exc_info())
