"""fieldloop.brokers.connected against the machine's Mosquitto: a connection cancelled at any
moment of its handshake (a Ctrl-C at start-up) leaves nothing behind that fails later."""

from __future__ import annotations

import asyncio
import contextlib
import gc
import uuid
from typing import Any

import aiomqtt
import pytest
from conftest import PrivateMosquitto

from fieldloop.brokers import client_kwargs, connected, parse_broker_url

pytestmark = pytest.mark.integration

DELAYS = [k / 2000 for k in range(40)]  # 0 to 20 ms into the connect, every half millisecond


async def _cancel_midway(broker: PrivateMosquitto, wrap: bool) -> list[dict[str, Any]]:
    url = broker.url
    loop = asyncio.get_running_loop()
    errors: list[dict[str, Any]] = []
    previous = loop.get_exception_handler()
    loop.set_exception_handler(lambda _loop, context: errors.append(context))
    try:
        for delay in DELAYS:
            client = aiomqtt.Client(
                **client_kwargs(parse_broker_url(url)),  # type: ignore[arg-type]
                identifier=f"fltest-{uuid.uuid4().hex[:8]}",
            )

            async def hold(client: aiomqtt.Client = client) -> None:
                async with connected(client) if wrap else client:
                    await asyncio.sleep(10)

            task = asyncio.create_task(hold())
            await asyncio.sleep(delay)
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError, aiomqtt.MqttError):
                await task
        await asyncio.sleep(0.3)
        broker.kill()  # every connection left open now ends: its socket's last event comes
        await asyncio.sleep(0.5)
        gc.collect()  # a future whose exception nobody read says so when it is collected
    finally:
        loop.set_exception_handler(previous)
    return errors


async def test_a_connect_cancelled_at_any_moment_leaves_no_error_behind(
    private_mosquitto: PrivateMosquitto,
) -> None:
    errors = await _cancel_midway(private_mosquitto, wrap=True)
    assert errors == [], [e.get("message") for e in errors]


async def test_the_bare_aiomqtt_client_leaves_errors_behind(
    private_mosquitto: PrivateMosquitto,
) -> None:
    """The control: what `connected` is for. When this fails, aiomqtt has fixed its cancelled
    connect and `connected` can go."""
    errors = await _cancel_midway(private_mosquitto, wrap=False)
    assert errors != []
