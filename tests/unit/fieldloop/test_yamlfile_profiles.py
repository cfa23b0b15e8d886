"""fieldloop.yamlfile and fieldloop.profiles: strict loading with file:line:col problems."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from fieldloop.profiles import (
    DeviceProfile,
    Table,
    check_files,
    load_profile,
    load_site,
)
from fieldloop.registers import Order, RawType
from fieldloop.yamlfile import FileError, FileProblem, parse_yaml, position

REPO = Path(__file__).resolve().parents[3]
CHILLER = REPO / "device_profiles" / "chiller.yaml"
DEMO_SITE = REPO / "deploy" / "sites" / "demo.yaml"

PROFILE_HEAD = """\
apiVersion: fieldloop/v1
kind: DeviceProfile
name: pump
resources:
"""  # lines 1-4; the first resource starts on line 5


def write(tmp_path: Path, name: str, text: str) -> Path:
    path = tmp_path / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text, encoding="utf-8")
    return path


def problems_of(exc: pytest.ExceptionInfo[FileError]) -> list[tuple[str, int, int, str]]:
    return [(p.path, p.line, p.col, p.message) for p in exc.value.problems]


def only_problem(exc: pytest.ExceptionInfo[FileError]) -> FileProblem:
    assert len(exc.value.problems) == 1, exc.value.problems
    return exc.value.problems[0]


# ---------------------------------------------------------------- shipped files


def test_shipped_chiller_profile_loads():
    p = load_profile(CHILLER)
    assert isinstance(p, DeviceProfile)
    assert p.name == "chiller"
    assert p.api_version == "fieldloop/v1"
    assert [r.name for r in p.resources] == [
        "supply_water_temp",
        "return_water_temp",
        "compressor_current",
        "run_hours",
        "discharge_temp",
    ]
    supply = p.resource("supply_water_temp")
    assert (supply.table, supply.address, supply.type) == (Table.input_registers, 0, RawType.int16)
    assert (supply.scale, supply.min, supply.max, supply.units) == (0.1, -10, 40, "degC")
    run_hours = p.resource("run_hours")
    assert (run_hours.type, run_hours.count, run_hours.max) == (RawType.uint32, 2, None)
    discharge = p.resource("discharge_temp")
    assert discharge.table is Table.holding_registers
    assert (discharge.byte_order, discharge.word_order) == (Order.big, Order.big)
    with pytest.raises(KeyError):
        p.resource("nope")


def test_shipped_demo_site_loads_with_its_profile():
    site = load_site(DEMO_SITE)
    assert site.id == "demo-site"
    assert site.path == DEMO_SITE
    (dev,) = site.spec.devices
    assert (dev.id, dev.asset, dev.profile) == ("chiller-1", "CH-01", "chiller")
    assert (dev.modbus_tcp.host, dev.modbus_tcp.port, dev.modbus_tcp.unit_id) == (
        "127.0.0.1",
        15020,
        1,
    )
    assert site.profile_of(dev) == load_profile(CHILLER)


def test_check_files_is_empty_for_good_files():
    assert check_files([CHILLER, DEMO_SITE]) == []


def test_check_files_with_no_files():
    assert check_files([]) == []


# ---------------------------------------------------------------- profile problems


def test_unknown_key_near_miss_suggests_did_you_mean(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"  # 5
        "    table: input_registers\n"  # 6
        "    address: 0\n"  # 7
        "    type: uint16\n"  # 8
        "    scael: 0.1\n",  # 9: typo for scale
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 9, 5)
    assert "unknown key 'scael'" in p.message
    assert "did you mean 'scale'?" in p.message
    assert "allowed:" in p.message
    assert "word_order" in p.message
    assert str(exc.value) == f"{path}:9:5: {p.message}"


def test_unknown_top_level_key_suggests_did_you_mean(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        "apiVersion: fieldloop/v1\n"
        "kind: DeviceProfile\n"
        "name: pump\n"
        "manufactuer: ACME\n"  # 4
        "resources:\n"
        "  - {name: flow, table: input_registers, address: 0, type: uint16}\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (4, 1)
    assert "did you mean 'manufacturer'?" in p.message


def test_unknown_key_far_from_any_field_has_no_suggestion(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"
        "    table: input_registers\n"
        "    address: 0\n"
        "    type: uint16\n"
        "    zzzzzz: 1\n",  # 9
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (9, 5)
    assert "unknown key 'zzzzzz'" in p.message
    assert "did you mean" not in p.message


def test_bad_enum_value_names_the_value_and_the_choices(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"
        "    table: input_registers\n"
        "    address: 0\n"
        "    type: float33\n",  # 8
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 8, 5)
    assert p.message.startswith("resources.0.type: ")
    assert "'float33'" in p.message
    assert "'float32'" in p.message
    assert "'int16'" in p.message


def test_bad_value_in_the_second_resource_points_at_it(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"  # 5
        "    table: input_registers\n"
        "    address: 0\n"
        "    type: uint16\n"
        "  - name: pressure\n"  # 9
        "    table: input_registers\n"
        "    address: 1\n"
        "    type: int16\n"
        "    word_order: middle\n",  # 13
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (13, 5)
    assert p.message.startswith("resources.1.word_order: ")
    assert "'middle'" in p.message


def test_bool_type_in_holding_registers(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"  # 5
        "    table: input_registers\n"
        "    address: 0\n"
        "    type: uint16\n"
        "  - name: running\n"  # 9
        "    table: holding_registers\n"
        "    address: 3\n"
        "    type: bool\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 9, 5)
    assert p.message.startswith("resources.1: ")
    assert "type bool lives in coils or discrete_inputs" in p.message


def test_non_bool_type_in_coils(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: running\n    table: coils\n    address: 0\n    type: int16\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (5, 5)
    assert "use type bool" in p.message


def test_missing_key_points_at_its_resource(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"  # 5
        "    table: input_registers\n"
        "    type: uint16\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (5, 5)
    assert (
        p.message == "resources.0: a Modbus resource needs address (or give path for an MQTT field)"
    )


def test_string_without_length(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: serial\n    table: holding_registers\n    address: 0\n"
        "    type: string\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (5, 5)
    assert "needs length" in p.message


def test_min_not_below_max(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n    table: input_registers\n    address: 0\n"
        "    type: uint16\n    min: 10\n    max: 10\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    assert "min (10.0) must be below max (10.0)" in only_problem(exc).message


def test_value_running_past_the_last_register(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: total\n    table: input_registers\n    address: 65534\n"
        "    type: float64\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    assert "runs past register 65535" in only_problem(exc).message


def test_overlapping_resources(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"
        "    table: input_registers\n"
        "    address: 0\n"
        "    type: float32\n"  # occupies 0..1
        "  - name: pressure\n"
        "    table: input_registers\n"
        "    address: 1\n"
        "    type: int16\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert p.path == str(path)
    assert p.line >= 1
    assert p.col >= 1
    assert "pressure at address 1 overlaps flow" in p.message


def test_same_address_in_different_tables_is_not_an_overlap(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD
        + "  - {name: a, table: input_registers, address: 0, type: float32}\n"
        + "  - {name: b, table: holding_registers, address: 1, type: int16}\n"
        + "  - {name: c, table: coils, address: 1, type: bool}\n",
    )
    assert len(load_profile(path).resources) == 3


def test_overlap_points_at_the_overlapping_resource(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD + "  - name: flow\n"  # 5
        "    table: input_registers\n"
        "    address: 0\n"
        "    type: float32\n"
        "  - name: pressure\n"  # 9
        "    table: input_registers\n"
        "    address: 1\n"  # 11
        "    type: int16\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    assert (only_problem(exc).line, only_problem(exc).col) in {(9, 5), (11, 5)}


def test_duplicate_resource_names(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        PROFILE_HEAD
        + "  - {name: flow, table: input_registers, address: 0, type: uint16}\n"
        + "  - {name: flow, table: input_registers, address: 5, type: uint16}\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    assert "resource name 'flow' is used twice" in only_problem(exc).message


def test_duplicate_yaml_key(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        "apiVersion: fieldloop/v1\n"
        "kind: DeviceProfile\n"
        "name: pump\n"
        "resources:\n"
        "  - name: flow\n"
        "    table: input_registers\n"
        "    address: 0\n"
        "    address: 4\n"  # 8: duplicate
        "    type: uint16\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 8, 5)
    assert p.message.startswith("invalid YAML: ")
    assert 'duplicate key "address"' in p.message


def test_yaml_syntax_error_position(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        "apiVersion: fieldloop/v1\n"
        "kind: DeviceProfile\n"
        "name: pump\n"
        "resources:\n"
        "  - name: [flow\n"  # 5: unclosed flow sequence
        "    table: input_registers\n",  # 6: the parser trips on ':' at column 10
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 6, 10)
    assert p.message.startswith("invalid YAML: ")
    assert p.message.endswith("fix the syntax here")


def test_tab_indentation_is_a_syntax_error_at_its_line(tmp_path):
    path = write(
        tmp_path, "pump.yaml", "apiVersion: fieldloop/v1\nkind: DeviceProfile\n\tname: x\n"
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert p.line == 3
    assert "invalid YAML" in p.message


def test_missing_file(tmp_path):
    path = tmp_path / "nope.yaml"
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 1, 1)
    assert p.message.startswith("cannot read the file")


def test_file_that_is_not_utf8(tmp_path):
    path = tmp_path / "latin1.yaml"
    path.write_bytes("name: caf\xe9\n".encode("latin-1"))
    with pytest.raises(FileError) as exc:
        load_profile(path)
    assert only_problem(exc).message.startswith("cannot read the file")


def test_empty_file_is_a_top_level_problem(tmp_path):
    path = write(tmp_path, "empty.yaml", "")
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (1, 1)
    assert "(top level)" in p.message


def test_several_problems_are_all_reported(tmp_path):
    path = write(
        tmp_path,
        "pump.yaml",
        "apiVersion: fieldloop/v2\n"  # 1
        "kind: DeviceProfile\n"
        "name: pump\n"
        "resources:\n"
        "  - name: flow\n"
        "    table: input_registers\n"
        "    address: -1\n"  # 7
        "    type: uint16\n",
    )
    with pytest.raises(FileError) as exc:
        load_profile(path)
    got = {(p.line, p.col, p.message.split(":")[0]) for p in exc.value.problems}
    assert got == {(1, 1, "apiVersion"), (7, 5, "resources.0.address")}
    assert str(exc.value).count(str(path)) == 2


def test_resources_must_not_be_empty(tmp_path):
    path = write(tmp_path, "pump.yaml", PROFILE_HEAD.replace("resources:\n", "resources: []\n"))
    with pytest.raises(FileError) as exc:
        load_profile(path)
    p = only_problem(exc)
    assert p.line == 4
    assert p.message.startswith("resources: ")


# ---------------------------------------------------------------- site files


SITE = """\
apiVersion: fieldloop/v1
kind: Site
site: plant-7
profiles_dir: profiles
devices:
  - id: ch-1
    asset: CH-01
    profile: {profile}
    modbus_tcp:
      host: 10.0.0.5
"""  # the profile key is on line 8, column 5


@pytest.fixture
def site_dir(tmp_path: Path) -> Path:
    d = tmp_path / "site"
    (d / "profiles").mkdir(parents=True)
    shutil.copy(CHILLER, d / "profiles" / "chiller.yaml")
    write(
        d / "profiles",
        "pump.yaml",
        PROFILE_HEAD + "  - {name: f, table: coils, address: 0, type: bool}\n",
    )
    return d


def test_site_with_local_profiles_dir_loads(site_dir):
    path = write(site_dir, "plant.yaml", SITE.format(profile="chiller"))
    site = load_site(path)
    assert site.id == "plant-7"
    assert set(site.profiles) == {"chiller"}
    (dev,) = site.spec.devices
    assert dev.modbus_tcp.port == 502  # default
    assert dev.poll_interval == 1.0


def test_site_referencing_a_missing_profile_lists_the_available_ones(site_dir):
    path = write(site_dir, "plant.yaml", SITE.format(profile="chiler"))
    with pytest.raises(FileError) as exc:
        load_site(path)
    p = only_problem(exc)
    assert (p.path, p.line, p.col) == (str(path), 8, 5)
    assert "profile 'chiler' not found" in p.message
    assert "(available: chiller, pump)" in p.message


def test_site_with_no_profiles_at_all_says_none(tmp_path):
    (tmp_path / "profiles").mkdir()
    path = write(tmp_path, "plant.yaml", SITE.format(profile="chiller"))
    with pytest.raises(FileError) as exc:
        load_site(path)
    assert "(available: none)" in only_problem(exc).message


def test_site_profile_name_must_match_its_file(site_dir):
    write(site_dir / "profiles", "other.yaml", CHILLER.read_text())  # says name: chiller
    path = write(site_dir, "plant.yaml", SITE.format(profile="other"))
    with pytest.raises(FileError) as exc:
        load_site(path)
    p = only_problem(exc)
    assert p.path == str(site_dir / "profiles" / "other.yaml")
    assert "must match the file name 'other'" in p.message


def test_site_reports_problems_inside_the_profile_file(site_dir):
    broken = site_dir / "profiles" / "pump.yaml"
    broken.write_text(PROFILE_HEAD + "  - {name: f, table: coils, address: 0, type: boool}\n")
    path = write(site_dir, "plant.yaml", SITE.format(profile="pump"))
    with pytest.raises(FileError) as exc:
        load_site(path)
    p = only_problem(exc)
    assert p.path == str(broken)
    assert p.line == 5
    assert "'boool'" in p.message


def test_site_explicit_profiles_dir_argument_wins(site_dir, tmp_path):
    other = tmp_path / "elsewhere"
    other.mkdir()
    path = write(site_dir, "plant.yaml", SITE.format(profile="chiller"))
    with pytest.raises(FileError) as exc:
        load_site(path, profiles_dir=other)
    assert str(other) in only_problem(exc).message


def test_site_nested_unknown_key_suggests(site_dir):
    text = SITE.format(profile="chiller") + "      prot: 1502\n"  # line 11
    path = write(site_dir, "plant.yaml", text)
    with pytest.raises(FileError) as exc:
        load_site(path)
    p = only_problem(exc)
    assert (p.line, p.col) == (11, 7)
    assert "did you mean 'port'?" in p.message


def test_site_duplicate_device_ids(site_dir):
    text = SITE.format(profile="chiller") + (
        "  - id: ch-1\n    asset: CH-02\n    profile: chiller\n    modbus_tcp: {host: h}\n"
    )
    path = write(site_dir, "plant.yaml", text)
    with pytest.raises(FileError) as exc:
        load_site(path)
    assert "device id 'ch-1' is used twice" in only_problem(exc).message


def test_check_files_collects_problems_of_every_file(site_dir, tmp_path):
    bad_site = write(site_dir, "plant.yaml", SITE.format(profile="nope"))
    bad_profile = write(tmp_path, "bad.yaml", PROFILE_HEAD + "  - {name: x, table: coils}\n")
    good = site_dir / "profiles" / "chiller.yaml"
    problems = check_files([good, bad_site, bad_profile])
    assert {p.path for p in problems} == {str(bad_site), str(bad_profile)}
    site_problems = [p for p in problems if p.path == str(bad_site)]
    assert [(p.line, p.col) for p in site_problems] == [(8, 5)]
    assert all(p.line >= 1 and p.col >= 1 for p in problems)


def test_check_files_reports_syntax_errors(tmp_path):
    path = write(tmp_path, "x.yaml", "kind: Site\nsite: [\n")
    problems = check_files([path])
    assert len(problems) == 1
    assert problems[0].path == str(path)
    assert "invalid YAML" in problems[0].message


# ---------------------------------------------------------------- helpers


def test_parse_yaml_from_text_and_position(tmp_path):
    data = parse_yaml(tmp_path / "unused.yaml", "top: 0\na:\n  b:\n    - x\n    - y: 1\n")
    assert position(data, ["top"]) == (1, 1)
    assert position(data, ["a"]) == (2, 1)
    assert position(data, ["a", "b"]) == (3, 3)
    assert position(data, ["a", "b", 1]) == (5, 7)
    assert position(data, ["a", "b", 1, "y"]) == (5, 7)
    # missing keys stop at the deepest node that exists
    assert position(data, ["a", "missing"]) == (2, 1)
    assert position(data, ["a", "b", 9]) == (3, 3)
    assert position(data, ["a", "b", "not-an-index"]) == (3, 3)
    assert position(data, []) == (1, 1)


def test_position_of_a_missing_top_level_key_is_the_document_start(tmp_path):
    data = parse_yaml(tmp_path / "unused.yaml", "\n\n  # comment\nkind: x\n")
    assert position(data, ["missing"]) == (4, 1)


def test_file_problem_str():
    assert str(FileProblem("f.yaml", 3, 7, "boom")) == "f.yaml:3:7: boom"
    err = FileError([FileProblem("a", 1, 2, "x"), FileProblem("b", 3, 4, "y")])
    assert str(err) == "a:1:2: x\nb:3:4: y"
    assert len(err.problems) == 2
