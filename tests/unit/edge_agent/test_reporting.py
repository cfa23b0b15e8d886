from __future__ import annotations

from datetime import UTC, datetime, timedelta

from edge_agent.readings import Reading
from edge_agent.reporting import Reporter
from fieldloop.profiles import ReportPolicy

T0 = datetime(2026, 11, 23, 8, 0, tzinfo=UTC)


def stream(
    reporter: Reporter, values: list[float], step: float = 1.0, metric: str = "t"
) -> list[float]:
    kept = []
    for i, v in enumerate(values):
        r = Reading("d", "a", metric, T0 + timedelta(seconds=i * step), v)
        if reporter.wants(r):
            kept.append(i * step)
    return kept


def test_period_zero_reports_every_reading() -> None:
    assert stream(Reporter(ReportPolicy()), [1, 1, 1, 1]) == [0, 1, 2, 3]


def test_period_reports_at_most_once_per_interval_per_metric() -> None:
    r = Reporter(ReportPolicy.model_validate({"mode": "period", "every": "10s"}))
    assert stream(r, [1.0] * 25) == [0, 10, 20]
    # each metric has its own clock
    assert stream(r, [1.0] * 3, metric="u") == [0]


def test_change_reports_moves_beyond_the_deadband_and_a_heartbeat() -> None:
    r = Reporter(ReportPolicy.model_validate({"mode": "change", "deadband": 0.5, "every": "1m"}))
    values = [10, 10.2, 10.4, 10.6, 10.7, 11.2] + [11.2] * 70
    kept = stream(r, values)
    # 10 (first), 10.6 (moved 0.6), 11.2 (moved 0.6), then the heartbeat 60 s later
    assert kept == [0, 3, 5, 65]


def test_change_without_heartbeat_stays_quiet_on_a_flat_signal() -> None:
    r = Reporter(ReportPolicy.model_validate({"mode": "change", "deadband": 0.1}))
    assert stream(r, [5.0] * 100) == [0]
