"""The embedded MQTT broker for demos and laptops (amqtt, MQTT 3.1.1, in memory, loopback only).
Production uses Mosquitto or an MQTT 5 cluster: point --broker at it."""

from __future__ import annotations

import logging

from amqtt.broker import Broker

from fieldloop.net import ensure_port_free

log = logging.getLogger("fieldloop.broker")


class EmbeddedBroker:
    def __init__(self, host: str = "127.0.0.1", port: int = 18830) -> None:
        self.host = host
        self.port = port
        self._broker: Broker | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    async def start(self) -> None:
        await ensure_port_free(
            self.host,
            self.port,
            f"pass another --broker-port, or --broker mqtt://{self.host}:{self.port} if that is "
            "a broker you want to use",
        )
        self._broker = Broker(
            {
                "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
                "plugins": {
                    "amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}
                },
            }
        )
        await self._broker.start()
        log.info("embedded MQTT broker (amqtt) listening on %s", self.url)

    async def stop(self) -> None:
        if self._broker is not None:
            await self._broker.shutdown()
            self._broker = None

    async def __aenter__(self) -> EmbeddedBroker:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.stop()
