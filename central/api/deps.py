"""Dependencies as Annotated aliases, so routes say what they need in their signature."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.orm import Session

from central.services.live_rules import DecisionRules


def _session(request: Request) -> Iterator[Session]:
    with request.app.state.sessions() as session:
        yield session


SessionDep = Annotated[Session, Depends(_session)]


def current_rules(request: Request) -> DecisionRules | None:
    """The decision rules live at this moment (None before start-up finished)."""
    live = getattr(request.app.state, "live_rules", None)
    return live.current if live is not None else None
