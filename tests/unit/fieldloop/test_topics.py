"""fieldloop.topics: the versioned MQTT topic scheme."""

from __future__ import annotations

import pytest

from fieldloop.topics import VERSION, Topics, check_segment


def test_default_root_topics():
    t = Topics()
    assert VERSION == "v1"
    assert t.root == "fieldloop"
    assert t.telemetry("demo-site") == "fieldloop/v1/demo-site/telemetry"
    assert t.events("demo-site") == "fieldloop/v1/demo-site/events"
    assert t.status("demo-site") == "fieldloop/v1/demo-site/status"
    assert t.ack("demo-site") == "fieldloop/v1/demo-site/ack"
    assert t.all_events() == "fieldloop/v1/+/events"


def test_custom_root():
    t = Topics(root="fltest-abc123")
    assert t.events("s1") == "fltest-abc123/v1/s1/events"
    assert t.all_events() == "fltest-abc123/v1/+/events"


def test_root_may_have_levels():
    t = Topics(root="tenant-a/fieldloop")
    assert t.ack("s1") == "tenant-a/fieldloop/v1/s1/ack"
    assert t.site_of("tenant-a/fieldloop/v1/s1/events") == "s1"


@pytest.mark.parametrize("method", ["telemetry", "events", "status", "ack"])
def test_site_of_inverts_every_site_topic(method):
    t = Topics()
    for site in ("demo-site", "site_2", "工厂一", "a.b"):
        assert t.site_of(getattr(t, method)(site)) == site


@pytest.mark.parametrize(
    "topic",
    [
        "other/v1/demo-site/events",  # another root
        "fieldloop/v2/demo-site/events",  # another version
        "fieldloop/v1/demo-site",  # no leaf
        "fieldloop/v1/demo-site/events/extra",  # too deep
        "fieldloop/v1//events",  # empty site
        "fieldloop/v1/",
        "fieldloop",
        "",
        "fieldloopx/v1/demo-site/events",  # root is a prefix of another root
        "xfieldloop/v1/demo-site/events",
    ],
)
def test_site_of_returns_none_for_foreign_topics(topic):
    assert Topics().site_of(topic) is None


def test_site_of_is_root_specific():
    a, b = Topics(root="a"), Topics(root="b")
    assert a.site_of(b.events("s")) is None
    assert b.site_of(b.events("s")) == "s"


@pytest.mark.parametrize("site", ["+", "#", "a+b", "a#", "a/b", "/", "", "$SYS", "$site"])
@pytest.mark.parametrize("method", ["telemetry", "events", "status", "ack"])
def test_sites_that_break_topics_are_rejected(method, site):
    with pytest.raises(ValueError, match="cannot be used in an MQTT topic") as exc:
        getattr(Topics(), method)(site)
    assert repr(site) in str(exc.value)


def test_dollar_inside_a_site_is_allowed_by_the_topic_scheme():
    # only a leading '$' is reserved by MQTT (system topics)
    assert Topics().events("a$b") == "fieldloop/v1/a$b/events"


@pytest.mark.parametrize("root", ["", "+", "#", "field+loop", "fieldloop/#", "$SYS", "$fieldloop"])
def test_bad_roots_are_rejected(root):
    with pytest.raises(ValueError, match="topic root"):
        Topics(root=root)


def test_check_segment_returns_the_value_and_names_what_it_checks():
    assert check_segment("ok-site", "site") == "ok-site"
    with pytest.raises(ValueError, match=r"^device 'a/b' cannot be used"):
        check_segment("a/b", "device")


def test_topics_is_immutable_and_comparable():
    t = Topics(root="r")
    assert t == Topics(root="r")
    assert hash(t) == hash(Topics(root="r"))
    with pytest.raises(AttributeError):
        t.root = "other"  # type: ignore[misc]
