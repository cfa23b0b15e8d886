"""The values a rule's message may show (``{{ticket.id}}``, ``{{location}}`` ...): one place,
for decision rules, follow-up tickets and SLA escalations alike."""

from __future__ import annotations

from central.storage.models import Ticket


def placeholders(ticket: Ticket) -> dict[str, str | None]:
    """The values of the placeholders a rule's message or follow-up title may use."""
    return {
        "ticket.id": f"#{ticket.id}",
        "ticket.title": ticket.title,
        "asset.id": ticket.asset_id,
        "asset.name": ticket.asset_id,  # the asset registry's name when there is one
        "site": ticket.site,
        "location": ticket.location,
        "fault.code": ticket.rule_id,
        "category": ticket.category,
        "priority": ticket.priority,
        "queue": ticket.department,
    }
