"""Central's settings as an operator writes them in an environment file."""

from __future__ import annotations

from datetime import timedelta

import pytest
from pydantic import ValidationError

from central.settings import Settings


def test_empty_variables_mean_none(monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("WEBHOOK_SECRETS", "NOTIFY_WEBHOOKS", "RULES_DIR", "CONSUMER_GROUP"):
        monkeypatch.setenv(f"FIELDLOOP_{name}", "")
    s = Settings()
    assert (s.webhook_secrets, s.notify_webhooks, s.rules_dir, s.consumer_group) == (
        {}, [], None, "",
    )  # fmt: skip


@pytest.mark.parametrize(
    ("raw", "window"),
    [("86400", timedelta(days=1)), ("PT2H", timedelta(hours=2)), ("90.5", timedelta(seconds=90.5))],
)
def test_the_reopen_window_in_seconds_or_iso(
    monkeypatch: pytest.MonkeyPatch, raw: str, window: timedelta
) -> None:
    monkeypatch.setenv("FIELDLOOP_IOT_REOPEN_WINDOW", raw)
    assert Settings().iot_reopen_window == window


def test_json_settings_are_parsed_and_bad_json_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("FIELDLOOP_NOTIFY_WEBHOOKS", '[{"url": "https://x/h", "secret": "s"}]')
    assert Settings().notify_webhooks == [{"url": "https://x/h", "secret": "s"}]
    monkeypatch.setenv("FIELDLOOP_WEBHOOK_SECRETS", "{bad")
    with pytest.raises(ValidationError, match="webhook_secrets"):
        Settings()


@pytest.mark.parametrize(("name", "value"), [("TIMEZONE", "Mars/Base"), ("CONSUMER_GROUP", "a/b")])
def test_bad_values_are_refused_by_name(
    monkeypatch: pytest.MonkeyPatch, name: str, value: str
) -> None:
    monkeypatch.setenv(f"FIELDLOOP_{name}", value)
    with pytest.raises(ValidationError, match=name.lower()):
        Settings()
