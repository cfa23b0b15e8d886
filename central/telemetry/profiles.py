"""The metrics of each device profile, as central knows them (``FIELDLOOP_PROFILES_DIR``, the
same ``device_profiles/`` the edge reads): a reading of a metric its device's profile does not
have is quarantined. A profile central does not have is said once and not checked."""

from __future__ import annotations

import logging
import threading
from pathlib import Path

from fieldloop.profiles import load_profile
from fieldloop.yamlfile import FileError

log = logging.getLogger("central.telemetry")


class ProfileMetrics:
    def __init__(self, directory: Path | None) -> None:
        self.directory = directory
        self._known: dict[str, tuple[float, frozenset[str] | None]] = {}  # name -> (mtime, ...)
        self._lock = threading.Lock()

    def metrics(self, name: str | None) -> frozenset[str] | None:
        """The profile's metric names; ``None`` when there is nothing to check against."""
        if name is None or self.directory is None:
            return None
        path = self.directory / f"{name}.yaml"
        try:
            mtime = path.stat().st_mtime
        except OSError:
            mtime = -1.0
        with self._lock:
            known = self._known.get(name)
            if known is not None and known[0] == mtime:
                return known[1]
            metrics = self._load(name, path, mtime)
            self._known[name] = (mtime, metrics)
            return metrics

    def _load(self, name: str, path: Path, mtime: float) -> frozenset[str] | None:
        if mtime < 0:
            log.warning(
                "telemetry names device profile %r, which is not in %s: its metrics are not "
                "checked until it is",
                name,
                self.directory,
            )
            return None
        try:
            profile = load_profile(path)
        except (FileError, OSError) as exc:
            log.warning("device profile %s cannot be read, metrics not checked: %s", path, exc)
            return None
        return frozenset(r.name for r in profile.resources)
