"""`fieldloop engineers import|list` against a real database file: the shipped examples import,
a bad file is refused at file:line:col and writes nothing."""

from __future__ import annotations

from pathlib import Path

import pytest

from fieldloop.cli import main

REPO = Path(__file__).resolve().parents[2]


def test_the_examples_import_and_list(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    assert (
        main(["engineers", "import", str(REPO / "deploy/examples/engineers.yaml"), "--db", db]) == 0
    )
    assert (
        main(["engineers", "import", str(REPO / "deploy/examples/engineers.csv"), "--db", db]) == 0
    )
    capsys.readouterr()
    assert main(["engineers", "list", "--db", db]) == 0
    out = capsys.readouterr().out.splitlines()
    assert [line.split("\t")[0] for line in out] == ["eng.li", "eng.sun", "eng.wu", "eng.zhou"]
    assert "skills=hvac:4,refrigeration:4" in out[0] and "open_jobs=0" in out[0]


@pytest.mark.parametrize(
    ("name", "text", "problem"),
    [
        ("bad.csv", "username,name,skills\neng.a,A,hvac:2\neng.x,X,hvac:9\n",
         "bad.csv:3:3: skills.hvac: Input should be less than or equal to 5"),
        ("bad.csv", "username,name,skill\neng.a,A,hvac:2\n", "bad.csv:1:3: unknown column 'skill'"),
        ("bad.yaml",
         "apiVersion: fieldloop/v1\nkind: Engineers\nengineers:\n  - username: eng.a\n"
         "    name: A\n    skils: {hvac: 2}\n", "bad.yaml:6:5: "),
    ],
)  # fmt: skip
def test_a_bad_file_is_refused_whole(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], name: str, text: str, problem: str
) -> None:
    db = f"sqlite:///{tmp_path / 'c.db'}"
    path = tmp_path / name
    path.write_text(text, encoding="utf-8")
    assert main(["engineers", "import", str(path), "--db", db]) == 1
    err = capsys.readouterr().err
    assert err.startswith(str(tmp_path / problem)), err
    assert "nothing imported" in err
    assert main(["engineers", "list", "--db", db]) == 0
    assert capsys.readouterr().out == ""  # eng.a, though good, was not written either
