"""Backtesting detection rules: the edge's own detectors (``DetectorBank``) run over recorded
readings twice, once with the base rule file and once with a candidate, and what each would
have raised is compared. Pure: the caller supplies the rules, the readings and the devices'
profiles; nothing is read or written here, and no clock is read (the readings' times are the
only clock, as on the edge).

The two banks see every reading in the same order, so two detections are the same event when
they come from the same reading, of the same rule, of the same kind; the comparison is made
reading by reading and nothing but the differences is kept, however many readings go through.

Readings are fed as the edge agent feeds its bank: every reading of a metric, whatever its
quality (threshold, stuck, rate and counter rules skip all but ``good`` ones; an implausible
rule without a range is raised by ``bad`` ones). Detectors keep their state per device, so the
readings need only be in time order per device: ordered by (site, device, time) is enough.
Each run starts with fresh detector state at the first reading.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from typing import Literal

from edge_agent.detectors import Detection, DetectorBank
from edge_agent.readings import Reading
from fieldloop.detection import AnyRule, DetectionFile

Side = Literal["base", "candidate"]
Device = tuple[str, str]  # (site, device): device ids are unique within a site only


@dataclass(frozen=True)
class Difference:
    """A detection one side raised at a reading and the other did not."""

    side: Side
    site: str
    detection: Detection


@dataclass
class Tally:
    """Events of one rule, asset and kind: raised by each side, and raised by one side only."""

    base: int = 0
    candidate: int = 0
    only_base: int = 0
    only_candidate: int = 0


TallyKey = tuple[str, str, str, str]  # rule id, site, asset, event kind


@dataclass
class Backtest:
    readings: int = 0  # readings fed to the detectors
    devices: set[Device] = field(default_factory=set)  # devices whose readings were fed
    skipped: dict[Device, int] = field(default_factory=dict)  # no known profile -> readings
    differences: list[Difference] = field(default_factory=list)  # in the readings' order
    tallies: dict[TallyKey, Tally] = field(default_factory=dict)
    seen: set[tuple[str, str]] = field(default_factory=set)  # (profile, metric) fed

    def only(self, side: Side) -> list[Difference]:
        return [d for d in self.differences if d.side == side]

    def raised(self, side: Side) -> int:
        """Events the side raised in all."""
        return sum(getattr(t, side) for t in self.tallies.values())

    @property
    def skipped_readings(self) -> int:
        return sum(self.skipped.values())


def watched_metrics(*files: DetectionFile) -> set[str]:
    """Every metric some rule of ``files`` watches: readings of other metrics need not be read."""
    return {r.metric for f in files for r in f.rules}


def untested(base: DetectionFile, candidate: DetectionFile, report: Backtest) -> list[AnyRule]:
    """The candidate's rules that are new or changed and saw no reading (no device of their
    profile reported their metric): the backtest says nothing about them. Often a misspelt
    profile or metric; or the scope left their devices out."""
    before = {r.id: r for r in base.rules}
    return [
        r
        for r in candidate.rules
        if before.get(r.id) != r and (r.profile, r.metric) not in report.seen
    ]


def backtest(
    base: DetectionFile,
    candidate: DetectionFile,
    readings: Iterable[tuple[str, Reading]],
    profiles: Mapping[Device, str],
) -> Backtest:
    """Run ``readings`` ((site, reading) pairs, in time order per device) through a bank of
    each file. ``profiles`` maps (site, device) to the device's profile name (what rules name);
    readings of a device not in it are counted as skipped, not fed."""
    by_site: dict[str, dict[str, str]] = {}
    for (site, device), profile in profiles.items():
        by_site.setdefault(site, {})[device] = profile
    banks: dict[str, tuple[DetectorBank, DetectorBank]] = {}
    report = Backtest()
    skipped = report.skipped
    metrics: dict[Device, set[str]] = {}
    last: Device | None = None
    pair: tuple[DetectorBank, DetectorBank] | None = None
    seen: set[str] = set()
    for site, r in readings:
        key = (site, r.device)
        if key != last:  # rows come grouped by device: look things up once per device
            last = key
            if key not in profiles:
                pair = None
            else:
                report.devices.add(key)
                seen = metrics.setdefault(key, set())
                pair = banks.get(site)
                if pair is None:
                    devices = by_site[site]
                    pair = banks[site] = (
                        DetectorBank(base, devices, {}),
                        DetectorBank(candidate, devices, {}),
                    )
        if pair is None:
            skipped[key] = skipped.get(key, 0) + 1
            continue
        report.readings += 1
        seen.add(r.metric)
        a = pair[0].observe(r)
        b = pair[1].observe(r)
        if a or b:
            _compare(report, site, a, b)
    report.seen = {(profiles[d], m) for d, ms in metrics.items() for m in ms}
    return report


def _compare(report: Backtest, site: str, a: list[Detection], b: list[Detection]) -> None:
    """The detections of one reading on each side (at most one per rule on each)."""
    theirs = {d.rule_id: d for d in b}
    for d in a:
        t = _tally(report, site, d)
        t.base += 1
        other = theirs.pop(d.rule_id, None)
        if other is not None and other.kind == d.kind:
            t.candidate += 1
            continue
        t.only_base += 1
        report.differences.append(Difference("base", site, d))
        if other is not None:  # the same rule raised another kind: a difference on both sides
            theirs[d.rule_id] = other
    for d in b:
        if theirs.get(d.rule_id) is d:
            t = _tally(report, site, d)
            t.candidate += 1
            t.only_candidate += 1
            report.differences.append(Difference("candidate", site, d))


def _tally(report: Backtest, site: str, d: Detection) -> Tally:
    key = (d.rule_id, site, d.asset, d.kind.value)
    t = report.tallies.get(key)
    if t is None:
        t = report.tallies[key] = Tally()
    return t
