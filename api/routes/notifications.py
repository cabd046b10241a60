"""GET /me/notifications and acknowledging one: what the worker's outbox holds for the caller."""

from __future__ import annotations

from datetime import datetime, timezone
from typing import Annotated

from fastapi import Path, Query

from api.auth import ActorDep, router_for
from api.deps import EngineDep, SessionDep
from api.errors import NotificationNotFound, error_responses
from api.schemas import NotificationPage, NotificationPublic
from disputeflow.db import notifications
from disputeflow.domain.actions import Actor
from disputeflow.domain.enums import Role

router = router_for(Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor, tags=["notifications"])

def _reader(actor: Actor) -> notifications.Reader:
    return notifications.Reader(user_id=actor.user_id, role=actor.role.value, region_prefix=actor.region_code or "")


@router.get(
    "/me/notifications",
    response_model=NotificationPage,
    summary="My notifications, newest first",
    description=(
        "Deadline warnings and breaches, escalations, assignments and the like, addressed to the caller by "
        "name or to the caller's role in their region (a mediator: by name only). `unacknowledged` counts "
        "those nobody has taken in hand yet, for a badge. Filter with `unacknowledged_only`, `kind` and "
        "`case_id`; page with `limit` and `offset`."
    ),
)
def my_notifications(
    actor: ActorDep,
    session: SessionDep,
    unacknowledged_only: bool = False,
    kind: Annotated[str | None, Query(max_length=40, pattern=r"^[a-z_]+$")] = None,
    case_id: Annotated[str | None, Query(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$",
                                         examples=["370102-20261130-0007"])] = None,
    limit: Annotated[int, Query(ge=1, le=notifications.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> NotificationPage:
    page = notifications.list_notifications(session, _reader(actor), unacknowledged_only=unacknowledged_only,
                                            kind=kind, case_id=case_id, limit=limit, offset=offset)
    return NotificationPage(items=[NotificationPublic.from_rows(*row) for row in page.items], total=page.total,
                            unacknowledged=page.unacknowledged, limit=limit, offset=offset)


@router.post(
    "/me/notifications/{notification_id}/acknowledge",
    response_model=NotificationPublic,
    summary="Take a notification in hand",
    description=(
        "Marks it acknowledged by the caller. For one addressed to a role, the first person to acknowledge "
        "it does so for everyone of that role; acknowledging again changes nothing and returns who did first."
    ),
    responses=error_responses(404),
)
def acknowledge(
    actor: ActorDep,
    engine: EngineDep,
    notification_id: Annotated[int, Path(ge=1, le=2**62)],
) -> NotificationPublic:
    done = notifications.acknowledge(engine, _reader(actor), notification_id, now=datetime.now(timezone.utc))
    if done is None:
        raise NotificationNotFound(notification_id)
    return NotificationPublic.from_rows(*done)
