"""Edge events over HTTP, for sites that cannot reach the broker: the same contract and the same
exactly-once ingest as MQTT. A device's token is confined to its own site."""

from __future__ import annotations

from datetime import UTC, datetime

from fastapi import APIRouter, HTTPException, Request, status

from central.api.auth import CallerDep
from central.domain.permissions import Role
from central.ingest.consumer import ack_for
from central.ingest.events import ingest
from fieldloop.messages import Ack, Event

router = APIRouter(tags=["edge"])


@router.post("/edge/events", response_model=Ack)
def post_event(event: Event, request: Request, caller: CallerDep) -> Ack:
    """Accept one edge event; a resent event id is acknowledged as a duplicate, not re-applied."""
    if caller.role is not Role.device:
        raise HTTPException(status.HTTP_403_FORBIDDEN, "only an edge device posts edge events")
    if caller.site != event.site:
        raise HTTPException(
            status.HTTP_403_FORBIDDEN,
            f"site: this device's credentials are for site {caller.site}, not {event.site}",
        )
    received = datetime.now(UTC)
    outcome = ingest(request.app.state.sessions, event, received, request.app.state.ingest_policy)
    return ack_for(event, outcome.result, datetime.now(UTC), outcome.ticket_id)
