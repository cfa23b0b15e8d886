"""Health and reference data."""

from __future__ import annotations

from fastapi import APIRouter
from sqlalchemy import text

from central.api.deps import SessionDep
from central.api.schemas import StateLabel
from central.domain.lifecycle import State

router = APIRouter(tags=["meta"])


@router.get("/healthz")
def healthz(session: SessionDep) -> dict[str, str]:
    session.execute(text("SELECT 1"))
    return {"status": "ok"}


@router.get("/states", response_model=list[StateLabel])
def states() -> list[StateLabel]:
    """Every ticket state with its English and Chinese label."""
    return [StateLabel.of(s) for s in State]
