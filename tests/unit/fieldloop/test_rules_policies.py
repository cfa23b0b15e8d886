"""dispatch.yaml and sla.yaml: the shipped files, every mistake a planner can make in a policy
or a calendar (reported by ``check_file`` at file:line:col), and choosing a policy."""

from __future__ import annotations

from datetime import date, time
from pathlib import Path

import pytest

from fieldloop.rules.check import check_file, load_checked
from fieldloop.rules.conditions import normalise_facts
from fieldloop.rules.evaluate import PolicyChoice, choose_policy, decide_policy
from fieldloop.rules.files import RuleSet, load_ruleset
from fieldloop.rules.policies import day_names
from fieldloop.rules.testing import ReferenceEngine, default_engines, run_tests
from fieldloop.yamlfile import FileError

REPO = Path(__file__).resolve().parents[3]


def write(tmp_path: Path, text: str, name: str = "rules.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    return path


def found(tmp_path: Path, text: str) -> list[str]:
    """check_file's problems as `line:col: message` (the file name is the test's own)."""
    return [f"{p.line}:{p.col}: {p.message}" for p in check_file(write(tmp_path, text))]


def one(tmp_path: Path, text: str) -> str:
    problems = found(tmp_path, text)
    assert len(problems) == 1, problems
    return problems[0]


# --- dispatch.yaml --------------------------------------------------------------------------

STANDARD = "  - id: standard\n    mode: offer\n"  # lines 4-5
DISPATCH_CATCH_ALL = "  - id: everything\n    then: [{use_policy: standard}]\n"


def dispatch(policies: str = STANDARD, rules: str = DISPATCH_CATCH_ALL) -> str:
    """A DispatchRules file: policies from line 4, then `rules:` and ``rules``."""
    return (
        "apiVersion: fieldloop/v1\nkind: DispatchRules\npolicies:\n" + policies + "rules:\n" + rules
    )


# --- sla.yaml -------------------------------------------------------------------------------

OFFICE = (
    "  - id: office\n"  # 4
    "    timezone: Asia/Shanghai\n"  # 5
    '    hours: {mon-fri: ["08:30-12:00", "13:00-17:30"]}\n'  # 6
)
SLA_STANDARD = (
    "  - id: standard\n    calendar: office\n    targets: {response: 1h, resolution: 1d}\n"
)
SLA_CATCH_ALL = "  - id: the-rest\n    then: [{use_policy: standard}]\n"


def sla(
    calendar_extra: str = "",
    policy_extra: str = "",
    *,
    calendars: str = OFFICE,
    policies: str = SLA_STANDARD,
    rules: str = SLA_CATCH_ALL,
) -> str:
    """A SlaRules file: the calendar from line 4; with no extras `policies:` is line 7, the
    policy 8-10 (calendar 9, targets 10) and ``policy_extra`` from line 11."""
    return (
        "apiVersion: fieldloop/v1\nkind: SlaRules\ncalendars:\n"
        + calendars
        + calendar_extra
        + "policies:\n"
        + policies
        + policy_extra
        + "rules:\n"
        + rules
    )


def loaded(tmp_path: Path, text: str, name: str = "rules.yaml") -> RuleSet:
    return load_ruleset(write(tmp_path, text, name))


# --- the shipped files ----------------------------------------------------------------------


@pytest.mark.parametrize("name", ["dispatch.yaml", "sla.yaml"])
def test_the_shipped_file_is_clean_and_its_tests_pass(name: str) -> None:
    path = REPO / "rules" / name
    assert check_file(path) == []
    result = load_checked(path)
    assert result.ruleset is not None and result.ruleset.spec is not None
    assert len(result.ruleset.spec.tests) >= 5
    for engine in default_engines():
        outcome = run_tests(result.ruleset, result.data, engine)
        assert len(outcome) == len(result.ruleset.spec.tests)
        assert [str(r.problem) for r in outcome if not r.passed] == []


def test_the_shipped_dispatch_policies() -> None:
    rs = load_ruleset(REPO / "rules/dispatch.yaml")
    assert (rs.kind, rs.mode) == ("DispatchRules", "first_hit")
    assert set(rs.policies) == {"emergency", "urgent", "standard", "planned", "dispatcher"}
    emergency = rs.policies["emergency"]
    assert (emergency.mode, emergency.parallel, emergency.accept_within) == ("offer", 3, 180.0)
    assert emergency.constraints.same_department is False
    assert emergency.relax == ("max_distance_km", "same_region", "max_open_jobs")
    assert rs.policies["planned"].grab is not None
    assert rs.policies["planned"].grab.between == (time(0, 0), time(23, 59))
    # every rule names a policy that exists, and the last is the catch-all
    named = {a.value for r in rs.rules for a in r.actions if a.name == "use_policy"}
    assert named <= set(rs.policies)
    assert choose_policy(rs, normalise_facts({"priority": "P4"})) == PolicyChoice(
        "everything-else", "standard"
    )


def test_the_shipped_sla_policies_and_calendars() -> None:
    rs = load_ruleset(REPO / "rules/sla.yaml")
    assert set(rs.calendars) == {"24x7", "office", "extended"}
    assert rs.calendars["24x7"].always and rs.days_off["24x7"] == frozenset()
    office = rs.calendars["office"]
    assert set(office.hours) == {"mon", "tue", "wed", "thu", "fri"}
    assert office.hours["wed"] == ((time(8, 30), time(12)), (time(13), time(17, 30)))
    # the office calendar's days off are the statutory holidays of the .ics next to it
    off = rs.days_off["office"]
    assert len(off) == 13 and date(2026, 10, 1) in off and date(2026, 2, 20) not in off
    p4 = rs.policies["p4-planned"]
    assert p4.pause_on == ("waiting_parts", "waiting_customer")  # written 待料, 待客户
    assert p4.targets.response == 8 * 3600.0 and p4.targets.arrival is None
    assert rs.policies["p1-emergency"].warn_at == (50.0, 75.0, 90.0)
    assert rs.policies["p3-standard"].warn_at == (75.0, 90.0)  # the default
    assert [e.at for e in rs.policies["p1-emergency"].escalations] == [100, 100, 150, 100]


# --- use_policy and policy ids --------------------------------------------------------------


def test_use_policy_must_name_a_defined_policy(tmp_path: Path) -> None:
    text = dispatch(rules="  - id: everything\n    then: [{use_policy: standrd}]\n")
    assert found(tmp_path, text) == [
        "8:13: policy 'standrd' is not defined; did you mean 'standard'?; policies: standard"
    ]
    text = sla(rules="  - id: the-rest\n    then: [{use_policy: standart}]\n")
    assert found(tmp_path, text) == [
        "13:13: policy 'standart' is not defined; did you mean 'standard'?; policies: standard"
    ]


def test_use_policy_naming_nothing_close_lists_the_policies(tmp_path: Path) -> None:
    text = dispatch(
        STANDARD + "  - id: urgent\n",
        "  - id: everything\n    then: [{use_policy: emergency}]\n",
    )
    (problem,) = found(tmp_path, text)
    assert problem == "9:13: policy 'emergency' is not defined; policies: standard, urgent"


def test_a_policy_id_used_twice(tmp_path: Path) -> None:
    assert found(tmp_path, dispatch(STANDARD + STANDARD)) == [
        "6:5: policies.1.id: policy id 'standard' is used twice; policy ids must be unique"
    ]
    assert found(tmp_path, sla(policies=SLA_STANDARD + SLA_STANDARD)) == [
        "11:5: policies.1.id: policy id 'standard' is used twice; policy ids must be unique"
    ]


def test_a_calendar_id_used_twice(tmp_path: Path) -> None:
    assert found(tmp_path, sla(calendars=OFFICE + OFFICE)) == [
        "7:5: calendars.1.id: calendar id 'office' is used twice; calendar ids must be unique"
    ]


# --- dispatch policies ----------------------------------------------------------------------


def test_grab_mode_needs_a_grab_section(tmp_path: Path) -> None:
    text = dispatch("  - id: standard\n    mode: grab\n")
    assert found(tmp_path, text) == [
        "4:5: policies.0: mode grab needs a `grab:` section (claim_limit at least)"
    ]


def test_grab_needs_a_backlog_or_a_window(tmp_path: Path) -> None:
    text = dispatch("  - id: standard\n    mode: grab\n    grab: {claim_limit: 2}\n")
    assert found(tmp_path, text) == [
        "6:5: policies.0.grab: grab needs backlog_at_least, between, or both: when is it on?"
    ]


@pytest.mark.parametrize(
    "grab",
    ["{backlog_at_least: 20}", '{between: ["18:00", "08:00"]}', "{backlog_at_least: 1, "
     'between: ["00:00", "23:59"], claim_limit: 3}'],
)  # fmt: skip
def test_grab_with_a_backlog_or_a_window_is_fine(tmp_path: Path, grab: str) -> None:
    assert found(tmp_path, dispatch(f"  - id: standard\n    mode: grab\n    grab: {grab}\n")) == []


def test_a_grab_window_must_not_be_empty(tmp_path: Path) -> None:
    text = dispatch('  - id: standard\n    grab: {between: ["08:00", "08:00"]}\n')
    assert found(tmp_path, text) == [
        "5:12: policies.0.grab.between: between: the start and the end are the same time"
    ]


def test_weights_of_all_zero(tmp_path: Path) -> None:
    zeros = ", ".join(
        f"{k}: 0"
        for k in ("distance", "sla_slack", "load", "skill_level", "last_engineer", "first_time_fix")
    )
    text = dispatch(f"  - id: standard\n    weights: {{{zeros}}}\n")
    assert found(tmp_path, text) == [
        "5:5: policies.0.weights: at least one weight must be above 0, or every engineer ties"
    ]
    # one weight above zero is enough
    assert found(tmp_path, text.replace("load: 0", "load: 0.5")) == []


def test_skills_cannot_be_relaxed(tmp_path: Path) -> None:
    text = dispatch("  - id: standard\n    relax: [same_region, skills]\n")
    problem = one(tmp_path, text)
    assert problem.startswith("5:26: policies.0.relax.1: ")  # at `skills`
    assert "(got 'skills')" in problem
    for relaxable in ("max_distance_km", "same_region", "same_department", "max_open_jobs"):
        assert relaxable in problem


def test_relax_may_name_a_constraint_once(tmp_path: Path) -> None:
    text = dispatch("  - id: standard\n    relax: [same_region, same_region]\n")
    assert found(tmp_path, text) == ["4:5: policies.0: relax names a constraint twice"]


def test_an_offer_must_lapse_after_some_time(tmp_path: Path) -> None:
    problem = one(tmp_path, dispatch("  - id: standard\n    accept_within: 0s\n"))
    assert problem.startswith("5:5: policies.0.accept_within: ")
    assert "more than zero" in problem


# --- first hit: the catch-all and shadowed rules --------------------------------------------

P1_RULE = "  - id: p1\n    when: {priority: {eq: P1}}\n    then: [{use_policy: standard}]\n"


def test_a_dispatch_file_without_a_catch_all(tmp_path: Path) -> None:
    assert found(tmp_path, dispatch(rules=P1_RULE)) == [
        "7:5: no catch-all: a ticket that matches no rule gets no policy; add a last rule "
        "without `when`, e.g. `- id: catch-all` with `then: [{use_policy: standard}]`"
    ]


def test_a_sla_file_without_a_catch_all(tmp_path: Path) -> None:
    problem = one(tmp_path, sla(rules=P1_RULE))
    assert problem.startswith("12:5: no catch-all: a ticket that matches no rule gets no policy")
    assert "use_policy: standard" in problem


def test_a_rule_after_a_catch_all_is_shadowed(tmp_path: Path) -> None:
    assert found(tmp_path, dispatch(rules=DISPATCH_CATCH_ALL + P1_RULE)) == [
        "9:5: rule 'p1' can never match (first hit wins): rule 'everything' (line 7) has no "
        "`when`, so it takes every ticket first; a catch-all must be the last rule: move it to "
        "the end"
    ]


def test_a_narrower_rule_after_a_broader_one_is_shadowed(tmp_path: Path) -> None:
    broad = (
        "  - id: urgent\n    when: {priority: {in: [P1, P2]}}\n    then: [{use_policy: standard}]\n"
    )
    problem = one(tmp_path, sla(rules=broad + P1_RULE + SLA_CATCH_ALL))
    assert problem.startswith(
        "15:5: rule 'p1' can never match (first hit wins): every ticket it matches also matches "
        "rule 'urgent' (line 12)"
    )


# --- SLA calendars --------------------------------------------------------------------------


def test_a_policy_naming_an_unknown_calendar(tmp_path: Path) -> None:
    text = sla(policies=SLA_STANDARD.replace("calendar: office", "calendar: ofice"))
    assert found(tmp_path, text) == [
        "9:5: policies.0.calendar: calendar 'ofice' is not defined; did you mean 'office'?; "
        "calendars: office"
    ]


@pytest.mark.parametrize("zone", ["Asia/Beijing", "Beijing", "GMT+8", "../../etc/passwd", ""])
def test_an_unknown_time_zone(tmp_path: Path, zone: str) -> None:
    text = sla(calendars=OFFICE.replace("Asia/Shanghai", f'"{zone}"'))
    problem = one(tmp_path, text)
    assert problem.startswith(f"5:5: calendars.0.timezone: {zone!r} is not an IANA time zone")


@pytest.mark.parametrize("zone", ["UTC", "Asia/Hong_Kong", "Europe/London", "America/New_York"])
def test_known_time_zones(tmp_path: Path, zone: str) -> None:
    assert found(tmp_path, sla(calendars=OFFICE.replace("Asia/Shanghai", zone))) == []


def hours(spec: str) -> str:
    """A calendar whose line 6 is ``hours: spec``."""
    return OFFICE.replace('{mon-fri: ["08:30-12:00", "13:00-17:30"]}', spec)


def test_hours_that_end_before_they_start(tmp_path: Path) -> None:
    assert found(tmp_path, sla(calendars=hours('{mon-fri: ["17:30-08:30"]}'))) == [
        "6:5: calendars.0.hours: mon-fri: 17:30-08:30 ends before it starts; split a night "
        'shift at midnight ("22:00-00:00" and "00:00-06:00")'
    ]
    problem = one(tmp_path, sla(calendars=hours('{sat: ["09:00-09:00"]}')))
    assert problem.startswith("6:5: calendars.0.hours: sat: 09:00-09:00 ends before it starts")


def test_a_night_shift_split_at_midnight_is_fine(tmp_path: Path) -> None:
    text = sla(calendars=hours('{mon-sun: ["22:00-00:00", "00:00-06:00"]}'))
    assert found(tmp_path, text) == []
    cal = loaded(tmp_path, text).calendars["office"]
    assert cal.hours["sun"] == ((time(0), time(6)), (time(22), time(0)))


def test_overlapping_hours(tmp_path: Path) -> None:
    problem = one(tmp_path, sla(calendars=hours('{mon-fri: ["08:30-12:00", "11:00-17:30"]}')))
    assert problem.startswith("6:5: calendars.0.hours: mon: working hours overlap")
    # a range to midnight overlaps anything after it; adjacent ranges do not overlap
    problem = one(tmp_path, sla(calendars=hours('{sat: ["20:00-00:00", "21:00-22:00"]}')))
    assert problem.startswith("6:5: calendars.0.hours: sat: working hours overlap")
    assert found(tmp_path, sla(calendars=hours('{sat: ["08:00-12:00", "12:00-16:00"]}'))) == []


def test_overlapping_hours_are_shown_as_written(tmp_path: Path) -> None:
    problem = one(tmp_path, sla(calendars=hours('{mon-fri: ["08:30-12:00", "11:00-17:30"]}')))
    assert "datetime" not in problem
    assert "08:30-12:00" in problem and "11:00-17:30" in problem


def test_a_day_given_twice_in_hours(tmp_path: Path) -> None:
    text = sla(calendars=hours('{mon-fri: ["08:00-12:00"], 周一: ["13:00-17:00"]}'))
    assert found(tmp_path, text) == [
        "6:5: calendars.0.hours: mon is given twice (in '周一' and before)"
    ]


@pytest.mark.parametrize(
    ("key", "message"),
    [
        ("mon-fry", "'mon-fry' is not a day or a range of days"),
        ("weekdays", "'weekdays' is not a day or a range of days"),
        ("周八", "'周八' is not a day or a range of days"),
        ("fri-mon", "'fri-mon': a range of days runs forward (mon-fri, not fri-mon)"),
    ],
)
def test_bad_day_names(tmp_path: Path, key: str, message: str) -> None:
    problem = one(tmp_path, sla(calendars=hours(f'{{{key}: ["08:00-17:00"]}}')))
    assert problem.startswith(f"6:5: calendars.0.hours: {message}")


@pytest.mark.parametrize(
    ("spec", "message"),
    [
        ('"08:00"', 'mon: give a list of ranges, e.g. ["08:30-12:00"]'),
        ('["08:00 to 17:00"]', "mon: '08:00 to 17:00' is not a range like \"08:30-12:00\""),
        ("[800]", 'mon: 800 is not a range like "08:30-12:00"'),
        (
            '["8:00-17:00"]',
            "mon: the start of '8:00-17:00' is a time of day in quotes, like \"08:30\", not '8:00'",
        ),
        (
            '["08:00-24:00"]',
            "mon: the end of '08:00-24:00' is a time of day in quotes, like \"08:30\", not '24:00'",
        ),
    ],
)
def test_bad_time_ranges(tmp_path: Path, spec: str, message: str) -> None:
    problem = one(tmp_path, sla(calendars=hours(f"{{mon: {spec}}}")))
    assert problem.startswith(f"6:5: calendars.0.hours: {message}")


@pytest.mark.parametrize(
    ("key", "days"),
    [
        ("周一-周五", ["mon", "tue", "wed", "thu", "fri"]),
        ("星期六-星期日", ["sat", "sun"]),
        ("周天", ["sun"]),
        ("Mon - Wed", ["mon", "tue", "wed"]),
        ("thursday", ["thu"]),
    ],
)
def test_day_names_in_chinese_and_english(tmp_path: Path, key: str, days: list[str]) -> None:
    assert day_names(key) == days
    text = sla(calendars=hours(f'{{"{key}": ["08:30-12:00", "13:00-17:30"]}}'))
    assert found(tmp_path, text) == []
    assert list(loaded(tmp_path, text).calendars["office"].hours) == days


def test_a_calendar_is_always_or_has_hours(tmp_path: Path) -> None:
    assert found(tmp_path, sla("    always: true\n")) == [
        "4:5: calendars.0: a calendar is either always (24x7) or has hours, not both"
    ]
    neither = "  - id: office\n    timezone: Asia/Shanghai\n"
    assert found(tmp_path, sla(calendars=neither)) == [
        '4:5: calendars.0: give hours (e.g. {mon-fri: ["08:30-17:30"]}) or always: true'
    ]
    always = neither + "    always: true\n"
    assert found(tmp_path, sla(calendars=always)) == []


def test_a_holiday_that_is_also_a_workday(tmp_path: Path) -> None:
    text = sla("    holidays: [2026-10-01, 2026-10-02]\n    workdays: [2026-09-27, 2026-10-02]\n")
    assert found(tmp_path, text) == [
        "4:5: calendars.0: 2026-10-02 is both a holiday and a working day"
    ]


def test_a_holidays_file_that_is_missing(tmp_path: Path) -> None:
    text = sla("    holidays_file: gone.ics\n")
    assert found(tmp_path, text) == [
        f"7:5: {tmp_path / 'gone.ics'} does not exist; put the .ics file next to sla.yaml"
    ]


def test_a_holidays_file_that_is_not_icalendar(tmp_path: Path) -> None:
    write(tmp_path, "date,name\n2026-10-01,国庆节\n", "holidays.ics")
    assert found(tmp_path, sla("    holidays_file: holidays.ics\n")) == [
        f"7:5: {tmp_path / 'holidays.ics'} is not an iCalendar file (it must start with "
        "BEGIN:VCALENDAR)"
    ]


def test_a_holidays_file_with_a_bad_date(tmp_path: Path) -> None:
    ics = "BEGIN:VCALENDAR\nBEGIN:VEVENT\nDTSTART;VALUE=DATE:20260230\nEND:VEVENT\nEND:VCALENDAR\n"
    write(tmp_path, ics, "holidays.ics")
    assert found(tmp_path, sla("    holidays_file: holidays.ics\n")) == [
        f"7:5: {tmp_path / 'holidays.ics'}:3: '20260230' is not a real date"
    ]


HOLIDAYS_ICS = (
    "BEGIN:VCALENDAR\r\nVERSION:2.0\r\n"
    "BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20261001\r\nDTEND;VALUE=DATE:20261004\r\nEND:VEVENT\r\n"
    "BEGIN:VEVENT\r\nDTSTART;VALUE=DATE:20260101\r\nEND:VEVENT\r\n"
    "END:VCALENDAR\r\n"
)


def test_days_off_are_the_file_and_holidays_less_workdays(tmp_path: Path) -> None:
    write(tmp_path, HOLIDAYS_ICS, "holidays.ics")
    text = sla(
        "    holidays_file: holidays.ics\n"
        "    holidays: [2026-10-05, 2026-10-06, 2026-10-01]\n"  # 10-01 is in the file as well
        "    workdays: [2026-09-27, 2026-10-03]\n"  # 调休: a Sunday, and a day of the file's
    )
    assert found(tmp_path, text) == []
    rs = loaded(tmp_path, text)
    assert rs.days_off["office"] == {
        date(2026, 1, 1),
        date(2026, 10, 1),
        date(2026, 10, 2),
        date(2026, 10, 5),
        date(2026, 10, 6),
    }
    assert rs.calendars["office"].workdays == (date(2026, 9, 27), date(2026, 10, 3))


def test_days_off_without_a_file_are_the_holidays(tmp_path: Path) -> None:
    always = "  - id: always\n    timezone: UTC\n    always: true\n"
    text = sla(calendars=OFFICE + "    holidays: [2026-01-01]\n" + always)
    rs = loaded(tmp_path, text)
    assert rs.days_off == {"office": {date(2026, 1, 1)}, "always": frozenset()}


# --- SLA policies ---------------------------------------------------------------------------


def test_warn_at_must_be_ascending(tmp_path: Path) -> None:
    for warn in ("[90%, 75%]", "[75%, 75%]"):
        assert found(tmp_path, sla(policy_extra=f"    warn_at: {warn}\n")) == [
            "11:5: policies.0.warn_at: warn_at: list the percentages once each, lowest first"
        ]


@pytest.mark.parametrize(
    ("warn", "message"),
    [
        ("[75%, 100%]", "warn_at is between 1% and 99.99%, not 100%"),
        ("[0.5%]", "warn_at is between 1% and 99.99%, not 0.5%"),
        ("[-10%]", "warn_at is between 1% and 99.99%, not -10%"),
        ("[lots]", "warn_at is a percentage like 75%, not 'lots'"),
        ("[true]", "warn_at is a percentage like 75%"),
    ],
)
def test_warn_at_out_of_range(tmp_path: Path, warn: str, message: str) -> None:
    problem = one(tmp_path, sla(policy_extra=f"    warn_at: {warn}\n"))
    assert problem.startswith(f"11:5: policies.0.warn_at: {message}")


def test_warn_at_as_percentages_or_numbers(tmp_path: Path) -> None:
    rs = loaded(tmp_path, sla(policy_extra="    warn_at: [50, 75%, 99.5%]\n"))
    assert rs.policies["standard"].warn_at == (50.0, 75.0, 99.5)


def test_an_escalation_on_a_target_without_a_time(tmp_path: Path) -> None:
    for target in ("arrival", "stage.repair"):
        text = sla(
            policy_extra="    escalations:\n"
            f"      - {{id: late, target: {target}, at: 100%, to: supervisor}}\n"
        )
        assert found(tmp_path, text) == [
            f"12:20: policies.0.escalations.0.target: escalation 'late' watches {target}, which "
            "this policy gives no time for; add it under targets/stages or pick another"
        ]
    fine = sla(
        policy_extra="    stages: {repair: 4h}\n    escalations:\n"
        "      - {id: late, target: stage.repair, at: 150%, to: supervisor}\n"
    )
    assert found(tmp_path, fine) == []


def test_an_escalation_on_something_that_is_not_a_target(tmp_path: Path) -> None:
    text = sla(
        policy_extra="    escalations:\n"
        "      - {id: late, target: stage.lunch, at: 100%, to: supervisor}\n"
    )
    problem = one(tmp_path, text)
    assert problem.startswith("12:20: policies.0.escalations.0.target: 'stage.lunch' is not a")


def test_an_unknown_escalation_role(tmp_path: Path) -> None:
    text = sla(
        policy_extra="    escalations:\n      - {id: late, target: response, at: 100%, to: boss}\n"
    )
    problem = one(tmp_path, text)
    assert problem.startswith("12:48: policies.0.escalations.0.to: ")  # at `boss`
    assert "(got 'boss')" in problem and "supervisor" in problem and "service_director" in problem


def test_an_escalation_id_used_twice(tmp_path: Path) -> None:
    text = sla(
        policy_extra="    escalations:\n"
        "      - {id: late, target: response, at: 100%, to: supervisor}\n"
        "      - {id: late, target: resolution, at: 100%, to: supervisor}\n"
    )
    problem = one(tmp_path, text)
    assert problem.startswith("13:10: policies.0.escalations.1.id: escalation id 'late' is used")


def test_an_unknown_pause(tmp_path: Path) -> None:
    problem = one(tmp_path, sla(policy_extra="    pause_on: [待料, lunch]\n"))
    assert problem == (
        "11:5: policies.0.pause_on: 'lunch' cannot pause a clock; one of waiting_parts, 待料, "
        "waiting_customer, 待客户, 客户原因"
    )


def test_pauses_in_chinese_are_normalised(tmp_path: Path) -> None:
    text = sla(policy_extra="    pause_on: [待料, 客户原因, Waiting_Parts]\n")
    assert found(tmp_path, text) == []
    assert loaded(tmp_path, text).policies["standard"].pause_on == (
        "waiting_parts",
        "waiting_customer",
    )


def test_resolution_shorter_than_response(tmp_path: Path) -> None:
    text = sla(policies=SLA_STANDARD.replace("resolution: 1d", "resolution: 30m"))
    assert found(tmp_path, text) == [
        "10:5: policies.0.targets: resolution (1800 s) is shorter than response (3600 s)"
    ]
    # arrival in between is compared with both neighbours
    text = sla(policies=SLA_STANDARD.replace("resolution: 1d", "arrival: 2h, resolution: 90m"))
    assert found(tmp_path, text) == [
        "10:5: policies.0.targets: resolution (5400 s) is shorter than arrival (7200 s)"
    ]


def test_a_policy_needs_some_target(tmp_path: Path) -> None:
    text = sla(policies=SLA_STANDARD.replace("{response: 1h, resolution: 1d}", "{}"))
    problem = one(tmp_path, text)
    assert problem.startswith("10:5: policies.0.targets: give at least one of response")


# --- choosing a policy ----------------------------------------------------------------------

CHOOSING = """\
apiVersion: fieldloop/v1
kind: DispatchRules
policies:
  - id: emergency
    parallel: 3
  - id: standard
rules:
  - id: hazard
    when: {tags: {contains_any: [hazard]}}
    then: [{use_policy: emergency}]
  - id: p1
    when: {priority: {eq: P1}}
    then: [{use_policy: emergency}]
  - id: everything-else
    then: [{use_policy: standard}]
tests:
  - name: hazard
    input: {tags: [Hazard], priority: P1}
    expect: {policy: emergency, rule: hazard}
  - name: wrong on purpose
    input: {priority: P3}
    expect: {policy: emergency}
"""


@pytest.fixture
def choosing(tmp_path: Path) -> RuleSet:
    return loaded(tmp_path, CHOOSING)


@pytest.mark.parametrize(
    ("facts", "expected"),
    [
        ({"tags": ["hazard"], "priority": "P1"}, PolicyChoice("hazard", "emergency")),
        ({"tags": ["HAZARD"]}, PolicyChoice("hazard", "emergency")),
        ({"priority": "P1"}, PolicyChoice("p1", "emergency")),
        ({"priority": "p1", "tags": ["comfort"]}, PolicyChoice("p1", "emergency")),
        ({"priority": "P3"}, PolicyChoice("everything-else", "standard")),
        ({}, PolicyChoice("everything-else", "standard")),
    ],
)
def test_choose_policy_first_hit(choosing: RuleSet, facts: dict, expected: PolicyChoice) -> None:
    assert choose_policy(choosing, normalise_facts(facts)) == expected


def test_decide_policy_takes_the_first_hit(choosing: RuleSet) -> None:
    assert decide_policy(choosing, ["hazard", "p1", "everything-else"]) == PolicyChoice(
        "hazard", "emergency"
    )
    assert decide_policy(choosing, ["everything-else"]) == PolicyChoice(
        "everything-else", "standard"
    )
    assert decide_policy(choosing, []) == PolicyChoice(None, None)


def test_no_rule_matching_chooses_no_policy(tmp_path: Path) -> None:
    text = dispatch(rules=P1_RULE)  # no catch-all (check reports it; loading allows it)
    rs = loaded(tmp_path, text)
    assert choose_policy(rs, normalise_facts({"priority": "P2"})) == PolicyChoice(None, None)
    assert choose_policy(rs, normalise_facts({"priority": "P1"})) == PolicyChoice("p1", "standard")


def test_a_file_test_that_fails_says_what_it_got(tmp_path: Path) -> None:
    result = load_checked(write(tmp_path, CHOOSING))
    assert result.ruleset is not None
    outcome = run_tests(result.ruleset, result.data, ReferenceEngine())
    assert [(r.name, r.passed) for r in outcome] == [("hazard", True), ("wrong on purpose", False)]
    problem = outcome[1].problem
    assert problem is not None and (problem.line, problem.col) == (20, 5)
    assert problem.message == (
        "test 'wrong on purpose': expected policy emergency, got standard (rule everything-else)"
    )


def test_a_test_expecting_an_unknown_rule(tmp_path: Path) -> None:
    text = CHOOSING.replace("expect: {policy: emergency, rule: hazard}", "expect: {rule: hazrd}")
    assert found(tmp_path, text) == [
        "19:14: test 'hazard': expects rule 'hazrd', which is not in this file; did you mean "
        "'hazard'?"
    ]


def test_load_ruleset_raises_every_problem_with_its_position(tmp_path: Path) -> None:
    text = dispatch(
        rules="  - id: a\n    when: {priority: {eq: P1}}\n    then: [{use_policy: nope}]\n"
        "  - id: b\n    then: [{use_policy: nada}]\n"
    )
    with pytest.raises(FileError) as exc:
        loaded(tmp_path, text)
    assert [(p.line, p.col) for p in exc.value.problems] == [(9, 13), (11, 13)]
    assert all("is not defined" in p.message for p in exc.value.problems)


def test_a_rule_chooses_one_policy(tmp_path: Path) -> None:
    rules = "  - id: everything\n    then: [{use_policy: standard}, {use_policy: standard}]\n"
    assert one(tmp_path, dispatch(rules=rules)) == (
        "8:37: a rule chooses one policy: remove the second use_policy"
    )


@pytest.mark.parametrize("name", ["../holidays.ics", "/etc/holidays.ics", ".hidden.ics", "x.txt"])
def test_the_holidays_file_is_a_name_beside_the_rules(tmp_path: Path, name: str) -> None:
    problem = one(tmp_path, sla(f"    holidays_file: {name!r}\n"))
    assert problem.startswith("7:5: calendars.0.holidays_file: ")
    assert "name a .ics file in the rules directory, no path" in problem


@pytest.mark.parametrize("word", ["monkey", "sunny", "fr"])
def test_a_word_that_only_starts_like_a_day_is_not_a_day(word: str) -> None:
    with pytest.raises(ValueError, match="is not a day or a range of days"):
        day_names(word)


def test_full_day_names_are_days() -> None:
    assert day_names("Monday-Wednesday") == ["mon", "tue", "wed"]
