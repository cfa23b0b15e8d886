"""Which readings leave the gateway as telemetry, per the device's report policy. Pure.

Only values read in the current poll are ever reported: a device that stops answering reports
nothing (never its last value again with a new timestamp)."""

from __future__ import annotations

from datetime import datetime

from edge_agent.readings import Reading
from fieldloop.profiles import ReportPolicy


class Reporter:
    def __init__(self, policy: ReportPolicy) -> None:
        self.policy = policy
        self._last: dict[str, tuple[datetime, float]] = {}
        # the default policy: every reading is reported, nothing to remember or compare
        self._everything = policy.mode == "period" and policy.every == 0

    def wants(self, reading: Reading) -> bool:
        if self._everything:
            return True
        p = self.policy
        last = self._last.get(reading.metric)
        if last is None:
            keep = True
        else:
            at, value = last
            due = (reading.time - at).total_seconds() >= p.every
            keep = (
                due
                if p.mode == "period"
                else (abs(reading.value - value) > p.deadband or (p.every > 0 and due))
            )
        if keep:
            self._last[reading.metric] = (reading.time, reading.value)
        return keep
