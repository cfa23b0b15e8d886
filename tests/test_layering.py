"""The dependency direction of DESIGN.md: fieldloop <- edge_agent, simulators, central; the edge
agent never imports central (it must install on a small gateway) and central never imports it."""

from __future__ import annotations

import ast
import gc
import subprocess
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@contextmanager
def _no_collector() -> Iterator[None]:
    """The garbage collector held off while files are parsed. An earlier test can leave an
    asyncio future with an unread exception (aiomqtt's, on a dropped connection); if the
    collector frees it in the middle of a parse, its __del__ logs a traceback, which Python 3.11
    formats with ast.parse too, and the nested parse breaks the outer one ("AST constructor
    recursion depth mismatch"). One collection first, not one per file: late in a long run the
    heap is large and each collection costs most of a second."""
    gc.collect()
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


def imported_packages(package: str, *, top_level_only: bool = False) -> dict[str, set[str]]:
    """Top-level package names each module of ``package`` imports (module -> names)."""
    found: dict[str, set[str]] = {}
    with _no_collector():
        trees = {
            p: ast.parse(p.read_text(encoding="utf-8")) for p in (REPO / package).rglob("*.py")
        }
    for path, tree in trees.items():
        nodes = tree.body if top_level_only else list(ast.walk(tree))
        names: set[str] = set()
        for node in nodes:
            if isinstance(node, ast.Import):
                names |= {a.name.split(".")[0] for a in node.names}
            elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
                names.add(node.module.split(".")[0])
        found[str(path.relative_to(REPO))] = names
    return found


@pytest.mark.parametrize(
    ("package", "forbidden"),
    [("edge_agent", {"central", "simulators", "fastapi", "sqlalchemy", "alembic"}),
     ("central", {"edge_agent", "simulators"}),
     ("simulators", {"edge_agent", "central"})],
)  # fmt: skip
def test_package_never_imports(package: str, forbidden: set[str]) -> None:
    offenders = {m: n & forbidden for m, n in imported_packages(package).items() if n & forbidden}
    assert offenders == {}


def test_fieldloop_imports_the_others_only_lazily() -> None:
    top = imported_packages("fieldloop", top_level_only=True)
    offenders = {m: n & {"edge_agent", "central", "simulators"} for m, n in top.items()}
    assert {m: n for m, n in offenders.items() if n} == {}


def test_importing_the_edge_agent_loads_nothing_of_central() -> None:
    code = (
        "import sys, edge_agent.agent, fieldloop.cli;"
        "bad = sorted(m for m in sys.modules if m.split('.')[0] in "
        "{'central', 'fastapi', 'sqlalchemy', 'simulators'});"
        "print(bad); sys.exit(1 if bad else 0)"
    )
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=REPO)
    assert r.returncode == 0, r.stdout + r.stderr
