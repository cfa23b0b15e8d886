"""The decision rules central runs with, reloaded without a restart.

The planners' files in the rules directory are loaded and checked as a whole: a set with any
problem is rejected and the set already live stays live, so a bad edit never stops the service
nor half-applies. The swap is one reference assignment, so an evaluation that started on the old
set finishes on it, and every decision records the versions it used."""

from __future__ import annotations

import asyncio
import dataclasses
import hashlib
import logging
import threading
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol

from fieldloop.rules.check import check_and_load
from fieldloop.rules.evaluate import matching
from fieldloop.rules.files import RuleSet

Matcher = Callable[[RuleSet, Mapping[str, Any]], list[str]]

log = logging.getLogger("fieldloop.central.rules")

FILES = {
    "classification": "classification.yaml",
    "priority": "priority.yaml",
    "dispatch": "dispatch.yaml",
    "sla": "sla.yaml",
}


class Engine(Protocol):
    name: str

    def load(self, ruleset: RuleSet) -> object: ...
    def unload(self, ruleset: RuleSet) -> None: ...
    def matching(self, ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]: ...
    def close(self) -> None: ...


@dataclass(frozen=True)
class DecisionRules:
    classification: RuleSet | None
    priority: RuleSet | None
    loaded_at: datetime
    files: tuple[str, ...] = ()
    match: Matcher = matching  # the engine that evaluates this set
    dispatch: RuleSet | None = None
    sla: RuleSet | None = None
    timezone: str = "UTC"  # the sites' zone: the hour and weekday the rules see

    @property
    def sets(self) -> tuple[RuleSet, ...]:
        return tuple(r for r in (self.classification, self.priority, self.dispatch, self.sla) if r)

    @property
    def version(self) -> str:
        """One id for the set: changes whenever any file's content does (a calendar's holiday
        file counts as part of sla.yaml)."""
        parts = [r.version + _days_off_digest(r) for r in self.sets]
        return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16] if parts else "none"


def _days_off_digest(rs: RuleSet) -> str:
    if not rs.days_off:
        return ""
    days = sorted(f"{c}:{d.isoformat()}" for c, ds in rs.days_off.items() for d in ds)
    return hashlib.sha256(",".join(days).encode()).hexdigest()[:16]


EMPTY = DecisionRules(None, None, datetime.fromtimestamp(0, UTC))


@dataclass
class ReloadResult:
    ok: bool
    version: str
    problems: list[str] = field(default_factory=list)


class _Loaded:
    """Rule files this process has already checked and loaded, by the digest of their bytes and
    of each file they read (an SLA calendar's .ics): reloading an unchanged set (SIGHUP, the
    watcher after a touch, a second app in one process) parses nothing. Only files without a
    problem are kept, and a RuleSet is immutable, so sharing one is safe."""

    SIZE = 64

    def __init__(self) -> None:
        self._items: dict[tuple[str, str], tuple[RuleSet, tuple[tuple[Path, str | None], ...]]]
        self._items = {}
        self._lock = threading.Lock()

    def get(self, path: Path) -> tuple[list[str], RuleSet | None]:
        key = (str(path), _digest(path))
        with self._lock:
            hit = self._items.get(key)
        if hit is not None and all(_digest(p) == d for p, d in hit[1]):
            return [], hit[0]
        problems, ruleset = check_and_load(path)
        if ruleset is None:
            return [str(p) for p in problems], None
        reads = tuple((p, _digest(p)) for p in _reads(ruleset))
        if key[1] is not None and key[1] == ruleset.version:  # unchanged while it was read
            with self._lock:
                if len(self._items) >= self.SIZE:
                    self._items.pop(next(iter(self._items)))
                self._items[key] = (ruleset, reads)
        return [], ruleset


def _digest(path: Path) -> str | None:
    try:
        return hashlib.sha256(path.read_bytes()).hexdigest()
    except OSError:
        return None


def _reads(ruleset: RuleSet) -> list[Path]:
    folder = Path(ruleset.path).parent
    return [folder / c.holidays_file for c in ruleset.calendars.values() if c.holidays_file]


_LOADED = _Loaded()


def load_rules(directory: Path, timezone: str = "UTC") -> DecisionRules:
    """Load the set in ``directory``; FileError-free: raises RulesRejected listing problems."""
    problems: list[str] = []
    sets: dict[str, RuleSet | None] = {}
    present = []
    for name, filename in FILES.items():
        path = directory / filename
        if not path.exists():
            sets[name] = None
            continue
        present.append(filename)
        found, sets[name] = _LOADED.get(path)
        problems.extend(found)
    if problems:
        raise RulesRejected(problems)
    return DecisionRules(
        sets.get("classification"),
        sets.get("priority"),
        datetime.now(UTC),
        tuple(present),
        dispatch=sets.get("dispatch"),
        sla=sets.get("sla"),
        timezone=timezone,
    )


class RulesRejected(ValueError):
    def __init__(self, problems: list[str]) -> None:
        self.problems = problems
        super().__init__("\n".join(problems))


class LiveRules:
    """The live set for one central process. ``current`` is read without a lock: readers get
    either the old or the new set, never a mix."""

    def __init__(
        self, directory: Path | None, engine: Engine | None = None, timezone: str = "UTC"
    ) -> None:
        self.directory = directory
        self.timezone = timezone
        self.engine = engine
        self.current: DecisionRules = EMPTY
        self.last_error: list[str] = []
        self.last_attempt: datetime | None = None
        self._stamp: tuple[tuple[str, float, int], ...] = ()

    def reload(self) -> ReloadResult:
        self.last_attempt = datetime.now(UTC)
        if self.directory is None:
            return ReloadResult(True, self.current.version)
        self._stamp = self._files_stamp()
        try:
            candidate = load_rules(self.directory, self.timezone)
        except RulesRejected as exc:
            self.last_error = exc.problems
            log.error(
                "rules in %s rejected; still running version %s:\n%s",
                self.directory,
                self.current.version,
                "\n".join(exc.problems),
            )
            return ReloadResult(False, self.current.version, exc.problems)
        if self.engine is not None:
            try:
                candidate = self._on_engine(candidate)
            except Exception as exc:  # the engine cannot run this set exactly: reject it whole
                problem = f"{self.directory}: the rules engine refused the set: {exc}"
                self.last_error = [problem]
                log.error("%s; still running version %s", problem, self.current.version)
                return ReloadResult(False, self.current.version, [problem])
        changed = candidate.version != self.current.version
        old = self.current
        self.current = candidate
        if self.engine is not None and changed:
            for rs in old.sets:
                if rs not in candidate.sets:
                    self._unload(rs)
        self.last_error = []
        if changed:
            log.info("rules version %s live (%s)", candidate.version, ", ".join(candidate.files))
        return ReloadResult(True, candidate.version)

    def _on_engine(self, candidate: DecisionRules) -> DecisionRules:
        """Load the set into the engine before it goes live, and evaluate it there, falling
        back to the reference evaluator for a call the engine cannot answer (its worker died
        and is being restarted): a crash of the engine never stops tickets being decided."""
        assert self.engine is not None
        engine = self.engine
        for rs in candidate.sets:
            engine.load(rs)

        def match(ruleset: RuleSet, facts: Mapping[str, Any]) -> list[str]:
            try:
                return engine.matching(ruleset, facts)
            except RuntimeError as exc:  # EngineError: unavailable, timed out, action error
                log.warning("rules engine %s failed (%s); decided by the reference", engine.name,
                            exc)  # fmt: skip
                return matching(ruleset, facts)

        return dataclasses.replace(candidate, match=match)

    def _unload(self, rs: RuleSet) -> None:
        assert self.engine is not None
        try:
            self.engine.unload(rs)
        except RuntimeError as exc:
            log.warning("could not unload rules %s from the engine: %s", rs.version[:12], exc)

    def close(self) -> None:
        if self.engine is not None:
            self.engine.close()

    def _files_stamp(self) -> tuple[tuple[str, float, int], ...]:
        assert self.directory is not None
        out = []
        # the rule files and what they read (an SLA calendar's .ics)
        for p in [*(self.directory / f for f in FILES.values()), *self.directory.glob("*.ics")]:
            filename = p.name
            try:
                st = p.stat()
            except OSError:
                continue
            out.append((filename, st.st_mtime, st.st_size))
        return tuple(out)

    async def watch(self, every: float = 2.0) -> None:
        """Reload when a file's time or size changes (editors replace files; a poll is the one
        way that works on every filesystem, including bind mounts and network shares)."""
        while True:
            await asyncio.sleep(every)
            if self.directory is not None and self._files_stamp() != self._stamp:
                await asyncio.to_thread(self.reload)
