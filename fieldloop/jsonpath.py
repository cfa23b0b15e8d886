"""A deliberately small JSON path: ``$.a.b``, ``$.a[0].b``, ``$['key with space']``, or a bare
``a.b``. Only member and index steps: enough to map a device's payload, nothing that evaluates."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

_STEP = re.compile(
    r"""\.(?P<name>[A-Za-z_][A-Za-z0-9_-]*)   # .name
      | \[(?P<index>\d+)\]                    # [0]
      | \[(?P<q>['"])(?P<quoted>.*?)(?P=q)\]  # ['key'] or ["key"]
    """,
    re.VERBOSE,
)

_MISSING = object()


@dataclass(frozen=True)
class JsonPath:
    text: str
    steps: tuple[str | int, ...]

    def get(self, document: Any) -> Any:
        """The value at this path, or raise KeyError naming the step that was missing."""
        node = document
        for step in self.steps:
            if isinstance(step, int):
                if not isinstance(node, list) or step >= len(node):
                    raise KeyError(f"{self.text}: no element [{step}]")
                node = node[step]
            else:
                if not isinstance(node, dict) or step not in node:
                    raise KeyError(f"{self.text}: no member {step!r}")
                node = node[step]
        return node

    @property
    def top(self) -> str | int | None:
        return self.steps[0] if self.steps else None


def parse(text: str) -> JsonPath:
    """Parse a path; ValueError says where it stops making sense."""
    src = text.strip()
    body = src[1:] if src.startswith("$") else "." + src
    steps: list[str | int] = []
    pos = 0
    while pos < len(body):
        m = _STEP.match(body, pos)
        if not m:
            raise ValueError(
                f"JSON path {text!r} is not understood at {body[pos:]!r}; write it like "
                "$.sensor.temperature or $.values[0]"
            )
        if m.group("name") is not None:
            steps.append(m.group("name"))
        elif m.group("index") is not None:
            steps.append(int(m.group("index")))
        else:
            steps.append(m.group("quoted"))
        pos = m.end()
    if not steps:
        raise ValueError(f"JSON path {text!r} selects the whole payload; name a member")
    return JsonPath(src, tuple(steps))
