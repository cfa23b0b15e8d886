"""simulators.scenario_file: strict loading with file:line:col, binding to a site, every signal
type, and the ground truth of what a scenario injects."""

from __future__ import annotations

from pathlib import Path

import pytest
from support import write_site

from fieldloop.profiles import load_site
from fieldloop.yamlfile import FileError
from simulators.scenario_file import bind, load_scenario_file
from simulators.scenarios import InjectedFault
from simulators.site import build_site_simulators

HEAD = "apiVersion: fieldloop/v1\nkind: Scenario\nname: t\n"

GOOD = (
    HEAD
    + """profiles:
  chiller:
    signals:
      supply_water_temp: {type: constant, value: 7, noise: 0.2}
      return_water_temp: {type: sine, mean: 12, amplitude: 1, period: 1d}
      compressor_current: {type: step, before: 180, after: 240, at: 10m}
      run_hours: {type: counter, start: 1990, per_hour: 1, reset_at: 2h}
      discharge_temp: {type: constant, value: 80, stuck: {from: 1h, to: 90m}}
    faults:
      - {kind: slow, from: 1m, to: 2m, delay: 3s}
devices:
  chiller-1:
    signals:
      discharge_temp: {type: drift_hold_recover, base: 80, peak: 100, start: 3s, ramp: 8s,
                       hold: 12s, recover: 4s}
    faults:
      - {kind: exception, from: 5m, to: 6m, code: 4}
site_faults:
  - {kind: comm_loss, from: 30m, to: 1820s}
"""
)


def scenario_path(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "scenario.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def site(tmp_path: Path):
    return load_site(write_site(tmp_path, port=15020))


def test_a_good_file_binds_to_the_site_with_its_ground_truth(tmp_path: Path) -> None:
    make = bind(scenario_path(tmp_path, GOOD), site(tmp_path))
    s = make("chiller-1")
    assert s.name == "t" and set(s.signals) == {
        "supply_water_temp", "return_water_temp", "compressor_current", "run_hours",
        "discharge_temp",
    }  # fmt: skip
    # the device's own signal replaces the profile's (and with it the profile's stuck window)
    assert s.signals["discharge_temp"].value(15.0, 0, "x") == pytest.approx(100.0)
    assert s.signals["compressor_current"].value(599, 0, "x") == 180.0
    assert s.signals["compressor_current"].value(600, 0, "x") == 240.0
    assert s.signals["run_hours"].value(3600, 0, "x") == pytest.approx(1991.0)
    assert s.signals["run_hours"].value(7200 + 1800, 0, "x") == pytest.approx(0.5)
    assert sorted(s.faults, key=lambda f: (f.resource, f.start)) == [
        InjectedFault("chiller-1", "*", "slow", 60.0, 120.0),
        InjectedFault("chiller-1", "*", "exception", 300.0, 360.0),
        InjectedFault("chiller-1", "*", "comm_loss", 1800.0, 1820.0),
        InjectedFault("chiller-1", "compressor_current", "step", 600.0, None),
        InjectedFault("chiller-1", "discharge_temp", "drift_hold_recover", 3.0, 27.0),
        InjectedFault("chiller-1", "run_hours", "counter_reset", 7200.0, 7200.0),
    ]
    # site faults first, then the profile's, then the device's own
    assert [(f.kind, f.start, f.delay, f.code) for f in s.device_faults] == [
        ("comm_loss", 1800.0, 0.0, 0),
        ("slow", 60.0, 3.0, 0),
        ("exception", 300.0, 0.0, 4),
    ]


def test_stuck_freezes_the_value_in_its_window_and_is_ground_truth(tmp_path: Path) -> None:
    text = HEAD + (
        "profiles:\n  chiller:\n    signals:\n      discharge_temp: {type: ramp, from: 80, by: 20,"
        " over: 100s, stuck: {from: 50s, to: 70s}}\n"
    )
    s = bind(scenario_path(tmp_path, text), site(tmp_path))("chiller-1")
    sig = s.signals["discharge_temp"]
    assert [sig.value(t, 0, "x") for t in (40, 50, 60, 69.9, 70)] == pytest.approx(
        [88.0, 90.0, 90.0, 90.0, 94.0]
    )
    assert {(f.kind, f.start, f.end) for f in s.faults} == {
        ("drift", 0.0, 100.0),
        ("stuck", 50.0, 70.0),
    }


SIGNAL = "profiles:\n  chiller:\n    signals:\n      discharge_temp: "


@pytest.mark.parametrize(
    ("mapping", "key", "says"),
    [
        ("{type: constnt, value: 1}", "type", "did you mean 'constant'?"),
        ("{type: constant, valu: 1}", "valu", "did you mean 'value'?"),
        ("{type: step, before: 1, after: 2, at: 5x}", "at", "is not a duration"),
        ("{type: constant, value: .nan}", "value", "finite"),
        ("{type: constant, value: 1, noise: -1}", "noise", "greater than or equal to 0"),
        ("{type: constant, value: 1, stuck: {from: 2m, to: 1m}}", "stuck", "must come after"),
    ],
)
def test_bad_signals_are_refused_at_their_key(
    tmp_path: Path, mapping: str, key: str, says: str
) -> None:
    path = scenario_path(tmp_path, HEAD + SIGNAL + mapping + "\n")
    with pytest.raises(FileError) as err:
        load_scenario_file(path)
    text = str(err.value)
    col = len("      discharge_temp: ") + mapping.index(key) + 1
    [line] = [x for x in text.splitlines() if says in x]
    assert line.startswith(f"{path}:7:{col}: "), text


@pytest.mark.parametrize(
    ("fault", "says"),
    [
        ("{kind: comm_los, from: 1m}", "did you mean 'comm_loss'?"),
        ("{kind: slow, from: 1m, to: 2m}", "delay"),
        ("{kind: exception, from: 1m, code: 0}", "greater than or equal to 1"),
        ("{kind: comm_loss, from: 5m, to: 1m}", "must come after"),
    ],
)
def test_bad_faults_are_refused_with_file_line_col(tmp_path: Path, fault: str, says: str) -> None:
    path = scenario_path(tmp_path, HEAD + "site_faults:\n  - " + fault + "\n")
    with pytest.raises(FileError) as err:
        load_scenario_file(path)
    text = str(err.value)
    assert text.startswith(f"{path}:5:"), text
    assert says in text


def test_names_the_site_lacks_are_refused_each_at_its_line(tmp_path: Path) -> None:
    text = HEAD + (
        "profiles:\n"
        "  pump:\n    signals: {flow: {type: constant, value: 1}}\n"
        "  chiller:\n    signals:\n      discharge_tmp: {type: constant, value: 1}\n"
        "devices:\n  chiller-9:\n    signals: {discharge_temp: {type: constant, value: 1}}\n"
    )
    path = scenario_path(tmp_path, text)
    with pytest.raises(FileError) as err:
        bind(path, site(tmp_path))
    lines = str(err.value).splitlines()
    assert lines[0].startswith(f"{path}:5:3: there is no device profile 'pump'")
    assert "water_pump" in lines[0]  # what there is
    assert lines[1].startswith(f"{path}:9:7: profile 'chiller' has no resource 'discharge_tmp'")
    assert "discharge_temp" in lines[1]  # what it has
    assert lines[2].startswith(f"{path}:11:3: the site has no device 'chiller-9'")


def test_the_site_simulators_take_a_scenario_file(tmp_path: Path) -> None:
    path = scenario_path(tmp_path, GOOD)
    [sim] = build_site_simulators(site(tmp_path), str(path), seed=3)
    [device] = sim.devices
    assert device.scenario.name == "t" and device.seed == 3
    with pytest.raises(ValueError, match="or a scenario file"):
        build_site_simulators(site(tmp_path), "no-such-scenario")


def test_a_scenario_extends_another_replacing_signals_and_adding_faults(tmp_path: Path) -> None:
    (tmp_path / "base.yaml").write_text(GOOD.replace("name: t", "name: base"), encoding="utf-8")
    text = HEAD + (
        "extends: base\n"
        "profiles:\n  chiller:\n    signals:\n      supply_water_temp: {type: constant, value: 9}\n"
        "    faults:\n      - {kind: wrong_order, from: 4h}\n"
        "  water_pump:\n    signals: {flow: {type: constant, value: 1}}\n"
    )
    s = bind(scenario_path(tmp_path, text), site(tmp_path))("chiller-1")
    assert s.name == "t"
    assert s.signals["supply_water_temp"].value(0, 0, "x") == 9.0  # replaced
    assert s.signals["compressor_current"].value(0, 0, "x") == 180.0  # kept from the base
    assert [f.kind for f in s.device_faults] == ["comm_loss", "slow", "wrong_order", "exception"]


def test_extends_a_missing_file_is_refused_at_the_key(tmp_path: Path) -> None:
    path = scenario_path(tmp_path, HEAD + "extends: nowhere\n")
    with pytest.raises(FileError, match=r"scenario.yaml:4:1: extends: .*nowhere.yaml does not"):
        bind(path, site(tmp_path))
