"""GET /me/tasks: the caller's inbox of open tasks, soonest due first."""

from __future__ import annotations

from typing import Annotated

from fastapi import Query

from api.auth import ActorDep, router_for
from api.deps import SessionDep
from api.read_log import ReadLogDep
from api.schemas import InboxPage, InboxTask
from disputeflow.db import queries
from disputeflow.domain.enums import Role

router = router_for(Role.operator, Role.mediator, Role.legal_aid_officer, Role.supervisor, tags=["mediators"])


@router.get(
    "/me/tasks",
    response_model=InboxPage,
    summary="My open tasks, soonest due first",
    description=(
        "A mediator's inbox holds the tasks assigned to them; an operator's, legal-aid officer's or "
        "supervisor's holds the tasks waiting for their role in their region. Sorted by due time "
        "(tasks without one last), with a summary of each case. Page with `limit` and `offset`."
    ),
)
def my_tasks(
    actor: ActorDep,
    session: SessionDep,
    read_log: ReadLogDep,
    limit: Annotated[int, Query(ge=1, le=queries.MAX_PAGE)] = 50,
    offset: Annotated[int, Query(ge=0, le=100_000)] = 0,
) -> InboxPage:
    if actor.role is Role.mediator:
        page = queries.open_tasks(session, assignee_id=actor.user_id, limit=limit, offset=offset)
    else:
        page = queries.open_tasks(session, role=actor.role.value, region_prefix=actor.region_code,
                                  limit=limit, offset=offset)
    items = [InboxTask.from_rows(task, case, actor=actor) for task, case in page.items]
    read_log.record(items)
    return InboxPage(items=items, total=page.total, limit=limit, offset=offset)
