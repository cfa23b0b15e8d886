"""The planner's and operator's commands: checks that say file:line:col, flags that refuse bad
values naming the flag."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import REPO

from fieldloop.cli import main

pytestmark = pytest.mark.e2e


def test_profiles_check_shipped_files_succeed(capsys: pytest.CaptureFixture[str]) -> None:
    files = [REPO / "device_profiles/chiller.yaml", REPO / "deploy/sites/demo.yaml"]
    assert main(["profiles", "check", *map(str, files)]) == 0
    out = capsys.readouterr().out
    assert out.count("SUCCESS") == 2
    assert "2 of 2 file(s) OK" in out


def test_profiles_check_reports_file_line_col_and_fails(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    bad = tmp_path / "pump.yaml"
    bad.write_text(
        "apiVersion: fieldloop/v1\nkind: DeviceProfile\nname: pump\nresources:\n"
        "  - name: flow\n    table: input_registers\n    adress: 3\n    type: uint16\n",
        encoding="utf-8",
    )
    good = REPO / "device_profiles/chiller.yaml"
    assert main(["profiles", "check", str(bad), str(good)]) == 1
    out = capsys.readouterr().out
    assert f"Checking {bad}  FAILED" in out
    assert f"{bad}:7:5: unknown key 'adress'; did you mean 'address'?" in out
    assert "1 of 2 file(s) OK" in out


def test_rules_check(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["rules", "check", str(REPO / "rules/detection.yaml")]) == 0
    bad = tmp_path / "detection.yaml"
    bad.write_text(
        "apiVersion: fieldloop/v1\nkind: DetectionRules\nrules:\n"
        "  - id: r1\n    title: hot\n    profile: chiller\n    metric: t\n    above: 9\n"
        "    for: ten seconds\n",
        encoding="utf-8",
    )
    assert main(["rules", "check", str(bad)]) == 1
    out = capsys.readouterr().out
    assert f"{bad}:9:5: rules.0.for: 'ten seconds' is not a duration" in out


@pytest.mark.parametrize(
    ("argv", "needle"),
    [
        (["demo", "--port", "70000"], "argument --port: port 70000 is outside 1..65535"),
        (["demo", "--timeout", "-1"], "must be greater than 0"),
        (["simulate", "--speed", "fast"], "'fast' is not a number"),
        (["launch"], "invalid choice: 'launch'"),
    ],
)
def test_bad_flags_name_the_flag(
    argv: list[str], needle: str, capsys: pytest.CaptureFixture[str]
) -> None:
    with pytest.raises(SystemExit) as exc:
        main(argv)
    assert exc.value.code == 2
    assert needle in capsys.readouterr().err


def test_edge_needs_a_site(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit, match="--site is required"):
        main(["edge"])


def test_a_broken_site_file_is_refused_with_its_position(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    site = tmp_path / "site.yaml"
    site.write_text(
        "apiVersion: fieldloop/v1\nkind: Site\nsite: s1\ndevices:\n  - id: d1\n    asset: A1\n"
        "    profile: chillr\n    modbus_tcp: {host: 127.0.0.1, port: 1502}\n",
        encoding="utf-8",
    )
    assert main(["simulate", "--site", str(site)]) == 2
    err = capsys.readouterr().err
    assert f"{site}:7:5: profile 'chillr' not found" in err
    assert "chiller" in err  # the available profiles are listed


def test_json_logs_are_one_object_per_line(capsys: pytest.CaptureFixture[str]) -> None:
    import json
    import logging

    assert main(["--log-format", "json", "rules", "check", str(REPO / "rules/detection.yaml")]) == 0
    logging.getLogger("fieldloop.edge").warning(
        "device %s stopped", "chiller-1", extra={"device": "chiller-1"}
    )
    lines = [x for x in capsys.readouterr().out.splitlines() if x.startswith("{")]
    doc = json.loads(lines[-1])
    assert doc["level"] == "warning" and doc["logger"] == "fieldloop.edge"
    assert doc["message"] == "device chiller-1 stopped" and doc["device"] == "chiller-1"
    logging.getLogger().handlers.clear()
