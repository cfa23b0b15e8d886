"""The MQTT topic scheme. Versioned so a v2 edge and a v1 central can share a broker.

``root`` is normally ``fieldloop``; tests and multi-tenant brokers give each their own root.
"""

from __future__ import annotations

from dataclasses import dataclass

VERSION = "v1"
_FORBIDDEN = set("+#/")


def check_segment(value: str, what: str) -> str:
    if not value or _FORBIDDEN & set(value) or value.startswith("$"):
        raise ValueError(
            f"{what} {value!r} cannot be used in an MQTT topic: it must be non-empty and contain "
            "no '/', '+' or '#' and not start with '$'"
        )
    return value


@dataclass(frozen=True)
class Topics:
    root: str = "fieldloop"

    def __post_init__(self) -> None:
        if not self.root or set("+#") & set(self.root) or self.root.startswith("$"):
            raise ValueError(f"topic root {self.root!r} must be non-empty, without '+', '#' or '$'")

    def _site(self, site: str, leaf: str) -> str:
        return f"{self.root}/{VERSION}/{check_segment(site, 'site')}/{leaf}"

    def telemetry(self, site: str) -> str:
        return self._site(site, "telemetry")

    def events(self, site: str) -> str:
        return self._site(site, "events")

    def status(self, site: str) -> str:
        return self._site(site, "status")

    def ack(self, site: str) -> str:
        """Central -> edge: acknowledgements of committed events."""
        return self._site(site, "ack")

    def notifications(self, recipient: str) -> str:
        """Where central publishes a person's (or a role's: ``role:dispatcher``) notifications:
        offers, withdrawals, alerts. Five levels, so no site wildcard (``+/events``) matches."""
        kind, name = (
            ("roles", recipient[5:]) if recipient.startswith("role:") else ("users", recipient)
        )
        return f"{self.root}/{VERSION}/_notify/{kind}/{check_segment(name, 'recipient')}"

    def all_events(self) -> str:
        return f"{self.root}/{VERSION}/+/events"

    def all_telemetry(self) -> str:
        return f"{self.root}/{VERSION}/+/telemetry"

    def leaf_of(self, topic: str) -> str | None:
        """``events``, ``telemetry``, ... of one of our site topics, or None."""
        if self.site_of(topic) is None:
            return None
        return topic.rsplit("/", 1)[1]

    def site_of(self, topic: str) -> str | None:
        """The site segment of one of our topics, or None if the topic is not ours."""
        prefix = f"{self.root}/{VERSION}/"
        if not topic.startswith(prefix):
            return None
        rest = topic[len(prefix) :].split("/")
        return rest[0] if len(rest) == 2 and rest[0] else None
