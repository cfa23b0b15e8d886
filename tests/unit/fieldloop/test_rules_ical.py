"""fieldloop.rules.ical: days off from an iCalendar (RFC 5545) holiday feed."""

from __future__ import annotations

import re
from datetime import date, timedelta
from pathlib import Path

import pytest

from fieldloop.rules.ical import MAX_BYTES, IcalError, parse_days_off, read_days_off

REPO = Path(__file__).resolve().parents[3]


def calendar(*events: str, crlf: bool = True) -> str:
    """A VCALENDAR around ``events`` (each the lines inside one VEVENT, "\n"-separated)."""
    lines = ["BEGIN:VCALENDAR", "VERSION:2.0", "PRODID:-//test//EN"]
    for e in events:
        lines += ["BEGIN:VEVENT", *e.splitlines(), "END:VEVENT"]
    lines.append("END:VCALENDAR")
    return ("\r\n" if crlf else "\n").join(lines) + "\r\n"


def days(first: str, count: int) -> set[date]:
    start = date.fromisoformat(first)
    return {start + timedelta(days=i) for i in range(count)}


# --- what is read ---------------------------------------------------------------------------


def test_all_day_events_end_the_day_before_dtend() -> None:
    text = calendar(
        "UID:a\nDTSTART;VALUE=DATE:20260101\nDTEND;VALUE=DATE:20260102\nSUMMARY:元旦",
        "UID:b\nDTSTART;VALUE=DATE:20261001\nDTEND;VALUE=DATE:20261004\nSUMMARY:国庆节",
    )
    assert parse_days_off(text) == {date(2026, 1, 1)} | days("2026-10-01", 3)


def test_an_event_over_a_month_and_a_year_end() -> None:
    text = calendar("DTSTART;VALUE=DATE:20261230\nDTEND;VALUE=DATE:20270103")
    assert parse_days_off(text) == days("2026-12-30", 4)


def test_an_event_without_dtend_is_one_day() -> None:
    text = calendar("DTSTART;VALUE=DATE:20260405\nSUMMARY:清明节")
    assert parse_days_off(text) == {date(2026, 4, 5)}


def test_overlapping_events_give_each_day_once() -> None:
    text = calendar(
        "DTSTART;VALUE=DATE:20260216\nDTEND;VALUE=DATE:20260220",
        "DTSTART;VALUE=DATE:20260218\nDTEND;VALUE=DATE:20260222",
    )
    assert parse_days_off(text) == days("2026-02-16", 6)


@pytest.mark.parametrize(
    ("event", "expected"),
    [
        # a DATE-TIME's date is taken as written (UTC or local)
        ("DTSTART:20260405T000000Z", {date(2026, 4, 5)}),
        ("DTSTART:20261001T090000\nDTEND:20261001T170000", {date(2026, 10, 1)}),
        ("DTSTART;TZID=Asia/Shanghai:20261001T000000\nDTEND;TZID=Asia/Shanghai:20261003T000000",
         days("2026-10-01", 2)),
        ("DTSTART:20261001T220000Z\nDTEND:20261001T230000Z", {date(2026, 10, 1)}),
    ],
)  # fmt: skip
def test_date_time_values(event: str, expected: set[date]) -> None:
    assert parse_days_off(calendar(event)) == expected


def test_names_are_case_insensitive_and_plain_newlines_work() -> None:
    text = calendar("dtstart;value=date:20260501\ndtend;value=date:20260503", crlf=False)
    text = text.replace("BEGIN:VEVENT", "begin:vevent").replace("END:VEVENT", "End:VEvent")
    assert parse_days_off(text) == days("2026-05-01", 2)


def test_folded_lines_continue_the_line_before() -> None:
    # RFC 5545 3.1: CRLF followed by a space or a tab continues the property
    text = (
        "BEGIN:VCALENDAR\r\n"
        "X-WR-CALNAME:中国法定节假日\r\n  2026\r\n"
        "BEGIN:VEVENT\r\n"
        "DTSTART;VALUE=DA\r\n TE:2026\r\n\t1001\r\n"
        "DTEND;VALUE=DATE:202610\r\n 04\r\n"
        "SUMMARY:国庆节\r\n  National Day\r\n"
        "END:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    assert parse_days_off(text) == days("2026-10-01", 3)


def test_dtstart_outside_an_event_is_not_a_day_off() -> None:
    # VTIMEZONE's STANDARD/DAYLIGHT carry DTSTART too; only VEVENTs are days off
    text = (
        "BEGIN:VCALENDAR\n"
        "BEGIN:VTIMEZONE\nTZID:Asia/Shanghai\nBEGIN:STANDARD\nDTSTART:19700101T000000\n"
        "TZOFFSETFROM:+0800\nTZOFFSETTO:+0800\nEND:STANDARD\nEND:VTIMEZONE\n"
        "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260619\nEND:VEVENT\n"
        "END:VCALENDAR\n"
    )
    assert parse_days_off(text) == {date(2026, 6, 19)}


def test_a_calendar_without_events_has_no_days_off() -> None:
    assert parse_days_off(calendar()) == frozenset()


def test_the_shipped_statutory_holidays() -> None:
    got = read_days_off(REPO / "rules/cn-statutory-holidays-2026.ics")
    assert len(got) == 13
    assert days("2026-02-16", 4) <= got  # 春节
    assert days("2026-10-01", 3) <= got  # 国庆节
    assert date(2026, 2, 20) not in got and date(2026, 10, 4) not in got  # DTEND exclusive


def test_a_byte_order_mark_is_skipped_when_read_from_a_file(tmp_path: Path) -> None:
    path = tmp_path / "h.ics"
    path.write_bytes(b"\xef\xbb\xbf" + calendar("DTSTART;VALUE=DATE:20260101").encode())
    assert read_days_off(path) == {date(2026, 1, 1)}


# --- what is refused ------------------------------------------------------------------------


@pytest.mark.parametrize(
    "text",
    [
        "",
        "\n",
        "hello, this is not a calendar\n",
        "BEGIN:VCARD\nVERSION:4.0\nFN:Someone\nEND:VCARD\n",
        "DTSTART;VALUE=DATE:20260101\nBEGIN:VCALENDAR\nEND:VCALENDAR\n",
        '{"holidays": ["2026-01-01"]}',
    ],
)
def test_not_a_calendar_is_refused_by_name(text: str) -> None:
    with pytest.raises(IcalError) as exc:
        parse_days_off(text, "h.ics")
    assert str(exc.value) == ("h.ics is not an iCalendar file (it must start with BEGIN:VCALENDAR)")


def test_a_last_event_without_end_is_refused() -> None:
    text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\nEND:VCALENDAR\n"
    with pytest.raises(IcalError, match=r"^h\.ics: the last VEVENT has no END:VEVENT$"):
        parse_days_off(text, "h.ics")


def test_an_event_without_end_before_the_next_one_is_refused() -> None:
    text = (
        "BEGIN:VCALENDAR\n"
        "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20261001\nDTEND;VALUE=DATE:20261004\n"  # no END
        "BEGIN:VEVENT\nDTSTART;VALUE=DATE:20260101\nEND:VEVENT\n"
        "END:VCALENDAR\n"
    )
    with pytest.raises(IcalError, match="END:VEVENT"):
        parse_days_off(text, "h.ics")


def test_end_without_begin_is_refused_at_its_line() -> None:
    text = "BEGIN:VCALENDAR\nVERSION:2.0\nEND:VEVENT\nEND:VCALENDAR\n"
    with pytest.raises(IcalError, match=r"^h\.ics:3: END:VEVENT without BEGIN:VEVENT$"):
        parse_days_off(text, "h.ics")


def test_an_event_without_dtstart_is_refused() -> None:
    text = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nSUMMARY:x\nEND:VEVENT\nEND:VCALENDAR\n"
    with pytest.raises(IcalError, match=r"^h\.ics:4: an event without DTSTART$"):
        parse_days_off(text, "h.ics")


@pytest.mark.parametrize(
    ("event", "message"),
    [
        ("DTSTART;VALUE=DATE:20260230", "h.ics:6: '20260230' is not a real date"),
        ("DTSTART;VALUE=DATE:20261301", "h.ics:6: '20261301' is not a real date"),
        (
            "DTSTART;VALUE=DATE:20260101\nDTEND;VALUE=DATE:20260230",
            "h.ics:7: '20260230' is not a real date",
        ),
        (
            "DTSTART;VALUE=DATE:2026-10-01",
            "h.ics:6: '2026-10-01' is not an iCalendar date (YYYYMMDD)",
        ),
        ("DTSTART:20261001T0900", "h.ics:6: '20261001T0900' is not an iCalendar date (YYYYMMDD)"),
        ("DTSTART;VALUE=DATE:", "h.ics:6: '' is not an iCalendar date (YYYYMMDD)"),
    ],
)
def test_a_bad_date_is_refused_at_its_line(event: str, message: str) -> None:
    # lines: 1 BEGIN:VCALENDAR, 2 VERSION, 3 PRODID, 4 BEGIN:VEVENT, 5 UID, 6 the event
    with pytest.raises(IcalError) as exc:
        parse_days_off(calendar("UID:x\n" + event), "h.ics")
    assert str(exc.value) == message


def test_line_numbers_count_the_lines_in_the_file() -> None:
    text = (
        "BEGIN:VCALENDAR\r\n"  # 1
        "COMMENT:statutory days only; the bridging days\r\n"  # 2
        "  and make-up working days go in sla.yaml\r\n"  # 3 (folded)
        "BEGIN:VEVENT\r\n"  # 4
        "DTSTART;VALUE=DATE:20260230\r\n"  # 5
        "END:VEVENT\r\n"
        "END:VCALENDAR\r\n"
    )
    with pytest.raises(IcalError) as exc:
        parse_days_off(text, "h.ics")
    assert str(exc.value) == "h.ics:5: '20260230' is not a real date"


def test_an_event_of_over_twenty_years_is_refused() -> None:
    text = calendar("UID:x\nDTSTART;VALUE=DATE:20000101\nDTEND;VALUE=DATE:20210101")
    with pytest.raises(IcalError, match=r"^h\.ics:6: an event of over 20 years$"):
        parse_days_off(text, "h.ics")
    text = calendar("DTSTART;VALUE=DATE:20260101\nDTEND;VALUE=DATE:99991231")
    with pytest.raises(IcalError, match="over 20 years"):
        parse_days_off(text, "h.ics")


def test_a_long_but_plausible_event_is_read() -> None:
    text = calendar("DTSTART;VALUE=DATE:20000101\nDTEND;VALUE=DATE:20190101")
    got = parse_days_off(text)
    assert len(got) == (date(2019, 1, 1) - date(2000, 1, 1)).days
    assert min(got) == date(2000, 1, 1) and max(got) == date(2018, 12, 31)


# --- reading the file -----------------------------------------------------------------------


def test_a_missing_file(tmp_path: Path) -> None:
    path = tmp_path / "gone.ics"
    with pytest.raises(IcalError) as exc:
        read_days_off(path)
    assert str(exc.value) == f"{path} does not exist; put the .ics file next to sla.yaml"


def test_a_file_over_one_megabyte_is_not_read(tmp_path: Path) -> None:
    path = tmp_path / "big.ics"
    body = calendar("DTSTART;VALUE=DATE:20260101").encode()
    path.write_bytes(body + b"X-PAD:" + b"x" * (MAX_BYTES - len(body)) + b"\r\n")
    assert path.stat().st_size > MAX_BYTES == 1_000_000
    with pytest.raises(IcalError) as exc:
        read_days_off(path)
    assert str(exc.value) == f"{path} is over 1 MB; a holiday calendar is far smaller"


def test_a_file_of_exactly_one_megabyte_is_read(tmp_path: Path) -> None:
    path = tmp_path / "big.ics"
    head = b"BEGIN:VCALENDAR\r\nX-PAD:"
    tail = "\r\nBEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260101\r\nEND:VEVENT\r\nEND:VCALENDAR\r\n"
    pad = MAX_BYTES - len(head) - len(tail.encode())
    path.write_bytes(head + b"x" * pad + tail.encode())
    assert path.stat().st_size == MAX_BYTES
    assert read_days_off(path) == {date(2026, 1, 1)}


def test_a_file_that_is_not_utf8_is_refused_by_name(tmp_path: Path) -> None:
    path = tmp_path / "gbk.ics"
    path.write_bytes(calendar("DTSTART;VALUE=DATE:20260101\nSUMMARY:元旦").encode("gbk"))
    with pytest.raises(IcalError, match=rf"^cannot read {re.escape(str(path))}: .*utf-8"):
        read_days_off(path)


def test_a_directory_is_refused_by_name(tmp_path: Path) -> None:
    with pytest.raises(IcalError, match=rf"^cannot read {re.escape(str(tmp_path))}: "):
        read_days_off(tmp_path)


def test_read_days_off_names_the_file_in_parse_errors(tmp_path: Path) -> None:
    path = tmp_path / "h.ics"
    path.write_text("not a calendar\n", encoding="utf-8")
    with pytest.raises(IcalError) as exc:
        read_days_off(path)
    assert str(exc.value) == (
        f"{path} is not an iCalendar file (it must start with BEGIN:VCALENDAR)"
    )


def test_a_byte_order_mark_in_text_is_skipped() -> None:
    text = "\ufeff" + calendar("DTSTART;VALUE=DATE:20261001\nDTEND;VALUE=DATE:20261002")
    assert parse_days_off(text) == {date(2026, 10, 1)}


def test_an_event_ending_before_it_starts_is_refused() -> None:
    text = calendar("DTSTART;VALUE=DATE:20261005\nDTEND;VALUE=DATE:20261001")
    with pytest.raises(IcalError, match="DTEND is before DTSTART"):
        parse_days_off(text)
