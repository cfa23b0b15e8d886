"""Shared fixtures: the real services (Mosquitto, PostgreSQL) started if they are down, isolated
databases and topic roots per test, free ports, and a check that no test leaks asyncio tasks."""

from __future__ import annotations

import asyncio
import itertools
import os
import random
import shutil
import socket
import subprocess
import time
import uuid
from collections.abc import AsyncIterator, Iterator
from pathlib import Path

import psycopg
import pytest
from support import Processes

from fieldloop.topics import Topics

REPO = Path(__file__).resolve().parent.parent

# Central decides with the pure-Python evaluator in tests unless a test asks for durable-rules:
# the differential tests hold the two to the same answers, and a worker process per app start
# would add minutes to the suite. tests/integration/central/test_live_rules.py runs both.
os.environ.setdefault("FIELDLOOP_RULES_ENGINE", "reference")
MOSQUITTO_URL = "mqtt://127.0.0.1:1883"
PG_ADMIN = "postgresql://postgres@127.0.0.1:5432/test"
WORKER = os.environ.get("PYTEST_XDIST_WORKER", "main")  # gw0, gw1 ... under pytest-xdist


# Ports for the servers tests start come from a slice of 20000-32767 of each worker's own:
# below the kernel's ephemeral range (32768-60999 here), so a client connection elsewhere never
# takes a port a test chose and is about to bind, and parallel workers never choose the same one.
_PORTS = range(20000, 32768)


def _port_slice() -> range:
    count = max(1, int(os.environ.get("PYTEST_XDIST_WORKER_COUNT", "1")))
    index = int(WORKER.removeprefix("gw")) if WORKER.startswith("gw") else 0
    size = len(_PORTS) // count
    return range(_PORTS.start + index * size, _PORTS.start + (index + 1) * size)


_port_cursor = itertools.count(random.randrange(len(_port_slice())))


def free_port() -> int:
    """A port on 127.0.0.1 nothing is listening on, from this worker's own slice."""
    ports = _port_slice()
    for _ in range(len(ports)):
        port = ports[next(_port_cursor) % len(ports)]
        with socket.socket() as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                continue  # taken (another program, or a socket still in TIME_WAIT)
            return port
    raise RuntimeError(f"no free port in {ports}")


def _port_open(port: int) -> bool:
    with socket.socket() as s:
        s.settimeout(0.5)
        return s.connect_ex(("127.0.0.1", port)) == 0


def _wait_port(port: int, what: str, within: float = 15.0) -> None:
    deadline = time.monotonic() + within
    while not _port_open(port):
        if time.monotonic() > deadline:
            pytest.fail(f"{what} is not listening on 127.0.0.1:{port} and could not be started")
        time.sleep(0.1)


def start_mosquitto() -> None:
    subprocess.run(["mosquitto", "-d", "-c", "/etc/mosquitto/mosquitto.conf"], check=False)


def start_postgres() -> None:
    versions = sorted(p.name for p in Path("/etc/postgresql").iterdir())
    subprocess.run(
        ["pg_ctlcluster", "--skip-systemctl-redirect", versions[-1], "main", "start"], check=False
    )


@pytest.fixture(scope="session")
def mosquitto() -> str:
    """The machine's real Mosquitto on 127.0.0.1:1883, started if it is down."""
    if not _port_open(1883):
        if shutil.which("mosquitto") is None:
            pytest.fail("mosquitto is not installed; run `make services`")
        start_mosquitto()
        _wait_port(1883, "mosquitto")
    return MOSQUITTO_URL


@pytest.fixture(scope="session")
def postgres() -> str:
    """Admin URL of the machine's real PostgreSQL (trust auth), started if it is down."""
    if not _port_open(5432):
        start_postgres()
        _wait_port(5432, "postgresql")
    return PG_ADMIN


def _create_database(admin: str, template: str | None = None) -> str:
    name = f"fl_test_{WORKER}_{uuid.uuid4().hex[:12]}"
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"' + (f' TEMPLATE "{template}"' if template else ""))
    return name


def _drop_database(admin: str, name: str) -> None:
    with psycopg.connect(admin, autocommit=True) as conn:
        conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')


def _pg(name: str) -> str:
    return f"postgresql+psycopg://postgres@127.0.0.1:5432/{name}"


@pytest.fixture
def pg_url(postgres: str) -> Iterator[str]:
    """A fresh, empty PostgreSQL database of this test's own, dropped afterwards."""
    name = _create_database(postgres)
    try:
        yield _pg(name)
    finally:
        _drop_database(postgres, name)


@pytest.fixture(scope="session")
def _pg_template(postgres: str) -> Iterator[str]:
    """One PostgreSQL database per worker, migrated to head once; tests get copies of it."""
    from central.storage.db import make_engine, migrate

    name = _create_database(postgres)
    engine = make_engine(_pg(name))
    try:
        migrate(engine)
    finally:
        engine.dispose()  # CREATE DATABASE ... TEMPLATE needs it with no connection
    try:
        yield name
    finally:
        _drop_database(postgres, name)


@pytest.fixture
def migrated_pg_url(postgres: str, _pg_template: str) -> Iterator[str]:
    """A PostgreSQL database of this test's own at the schema's head: a copy of the worker's
    migrated template (CREATE DATABASE ... TEMPLATE), dropped afterwards."""
    name = _create_database(postgres, template=_pg_template)
    try:
        yield _pg(name)
    finally:
        _drop_database(postgres, name)


@pytest.fixture(scope="session")
def _sqlite_template(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """One SQLite file per worker, migrated to head once; tests get copies of it."""
    from central.storage.db import make_engine, migrate

    path = tmp_path_factory.mktemp("template") / "central.db"
    engine = make_engine(f"sqlite:///{path}")
    try:
        migrate(engine)
    finally:
        engine.dispose()  # the last connection's close checkpoints the WAL into the file
    for suffix in ("-wal", "-shm"):
        assert not Path(f"{path}{suffix}").exists(), f"{path}{suffix} left after the migration"
    return path


@pytest.fixture
def migrated_sqlite_url(_sqlite_template: Path, tmp_path: Path) -> str:
    """A SQLite file of this test's own at the schema's head (a copy of the worker's template)."""
    path = tmp_path / "central.db"
    shutil.copyfile(_sqlite_template, path)
    return f"sqlite:///{path}"


@pytest.fixture
def timescale_url() -> Iterator[str]:
    """A fresh database on a PostgreSQL server with TimescaleDB preloaded, named by
    FIELDLOOP_TEST_TIMESCALE_URL (SQLAlchemy URL of any database there). CI has no TimescaleDB
    (Debian does not package it), so these tests alone skip when it is unset."""
    base = os.environ.get("FIELDLOOP_TEST_TIMESCALE_URL")
    if not base:
        pytest.skip("FIELDLOOP_TEST_TIMESCALE_URL is not set (no TimescaleDB server)")
    from sqlalchemy.engine import make_url

    url = make_url(base)
    admin = url.set(drivername="postgresql").render_as_string(hide_password=False)
    name = _create_database(admin)
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        _drop_database(admin, name)


@pytest.fixture(params=["sqlite", "postgresql", "timescaledb"])
def any_store_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """The telemetry store's three layouts: SQLite, PostgreSQL partitions, TimescaleDB (which
    skips unless FIELDLOOP_TEST_TIMESCALE_URL is set)."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    if request.param == "postgresql":
        return request.getfixturevalue("pg_url")
    return request.getfixturevalue("timescale_url")


@pytest.fixture
def sqlite_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'central.db'}"


@pytest.fixture(params=["sqlite", "postgresql"])
def db_url(request: pytest.FixtureRequest) -> str:
    """Each storage test runs on both SQLite and PostgreSQL, on a database already at the
    schema's head (a copy of a migrated template: migrating again is the no-op every start
    does)."""
    if request.param == "sqlite":
        return request.getfixturevalue("migrated_sqlite_url")
    return request.getfixturevalue("migrated_pg_url")


@pytest.fixture(params=["sqlite", "postgresql"])
def empty_db_url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    """Both databases, empty: for tests of the migrations themselves."""
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'central.db'}"
    return request.getfixturevalue("pg_url")


@pytest.fixture
def topics() -> Topics:
    """A topic root of this test's own, so tests sharing the broker never see each other."""
    return Topics(root=f"fltest-{uuid.uuid4().hex[:10]}")


@pytest.fixture(autouse=True)
async def _no_leaked_tasks() -> AsyncIterator[None]:
    """Fail a test that leaves asyncio tasks running (as pymodbus's own suite does)."""
    try:
        loop = asyncio.get_running_loop()
    except RuntimeError:
        yield
        return
    before = asyncio.all_tasks(loop)
    yield
    await asyncio.sleep(0)
    leaked = [
        t
        for t in asyncio.all_tasks(loop) - before
        if not t.done() and t is not asyncio.current_task()
    ]
    if leaked:
        for t in leaked:
            t.cancel()
        pytest.fail(f"test leaked asyncio tasks: {[(t.get_name(), t.get_coro()) for t in leaked]}")


@pytest.fixture
def processes() -> Iterator[Processes]:
    """Start a test's processes through this: each is killed and its pipes closed at the end,
    pass or fail."""
    owned = Processes()
    try:
        yield owned
    finally:
        owned.close()


class PrivateMosquitto:
    """A Mosquitto of one test's own, on its own port, that the test may kill and restart."""

    def __init__(self, directory: Path) -> None:
        self.port = free_port()
        self.conf = directory / "mosquitto.conf"
        self.conf.write_text(
            f"listener {self.port} 127.0.0.1\nallow_anonymous true\npersistence false\n"
            f"log_dest file {directory / 'mosquitto.log'}\n",
            encoding="utf-8",
        )
        self.proc: subprocess.Popen[bytes] | None = None

    @property
    def url(self) -> str:
        return f"mqtt://127.0.0.1:{self.port}"

    def start(self) -> None:
        self.proc = subprocess.Popen(["mosquitto", "-c", str(self.conf)])
        _wait_port(self.port, "the private mosquitto")

    def kill(self) -> None:
        if self.proc is not None:
            self.proc.kill()
            self.proc.wait(10)
            self.proc = None


@pytest.fixture
def private_mosquitto(mosquitto: str, tmp_path: Path) -> Iterator[PrivateMosquitto]:
    broker = PrivateMosquitto(tmp_path)
    broker.start()
    try:
        yield broker
    finally:
        broker.kill()
