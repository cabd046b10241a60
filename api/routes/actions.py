"""One route per human action: `POST /cases/{case_id}/actions/{type}`, generated from the commands.

Each route's body is that command's fields (without `type`), its roles are the command's roles
(403 for a role that may never do it), its example the command's, and it sends the case workflow's `act`
update. Whether the action is allowed *now* (stage, scope, guards) the workflow's validator
decides: a refusal is 409 with its reason. The actor comes from the bearer token only.

The Idempotency-Key header is the action's request id and its Temporal update id, so a retried
request changes the case once and answers with the same state. Without the header a fresh key is
generated (and returned in the `Idempotency-Key` response header), so such a request is not safe
to retry.
"""

# No `from __future__ import annotations`: the routes' body types are built at run time and FastAPI
# must see them as real classes, not as names to look up.

from typing import Annotated, Any

from fastapi import Body, Request, Response
from pydantic import BaseModel, ConfigDict, create_model

from api import cases
from api.auth import ActorDep, allow, router_for
from api.deps import CaseIdPath, IdempotencyKey, SessionDep, TemporalDep
from api.read_log import ReadLogDep
from api.errors import ActionAcceptedBody, error_responses
from api.schemas import CaseDetail
from disputeflow.domain.actions import COMMAND_TYPES
from disputeflow.domain.enums import Role
from disputeflow.domain.lifecycle import OPEN_STAGES

ACTION_ROLES = frozenset(role for command in COMMAND_TYPES.values() for role in command.roles)
assert Role.auditor not in ACTION_ROLES, "auditors read; they never act"

router = router_for(*ACTION_ROLES, tags=["actions"], responses={
    202: {"model": ActionAcceptedBody, "description": "Accepted by the case, not finished in time; it will be. "
                                                      "The same request with the same Idempotency-Key reads the result"},
    **error_responses(404, 409, 413, 503)})

def body_model(command_type: str) -> type[BaseModel]:
    """The command's fields, with their constraints and docs, minus the `type` the route implies."""
    command = COMMAND_TYPES[command_type]
    fields: dict[str, Any] = {name: (f.annotation, f) for name, f in command.model_fields.items() if name != "type"}
    return create_model(f"{command.__name__}Body", __config__=ConfigDict(extra="forbid"), __doc__=command.__doc__,
                        **fields)


def _tags(roles: frozenset[Role]) -> list[str]:
    """Tags besides the router's "actions"."""
    tags = []
    if Role.mediator in roles:
        tags.append("mediators")
    if roles == {Role.supervisor}:  # reassignment, extensions, escalation outcomes, reviews
        tags.append("supervisors")
    return tags


def _add_route(command_type: str) -> None:
    command = COMMAND_TYPES[command_type]
    stages, roles, what, example = command.stages, command.roles, command.what, command.example
    body_type = body_model(command_type)
    body_param = Body(openapi_examples={"example": {"value": example}}) if example else Body()
    where = "any open stage" if stages == OPEN_STAGES else ", ".join(sorted(s.value for s in stages))

    async def endpoint(
        case_id: CaseIdPath,
        body: Annotated[body_type, body_param],  # type: ignore[valid-type]
        request: Request,
        response: Response,
        actor: ActorDep,
        session: SessionDep,
        temporal: TemporalDep,
        read_log: ReadLogDep,
        idempotency_key: IdempotencyKey = None,
    ) -> CaseDetail:
        request_id = idempotency_key or cases.new_request_id()
        response.headers["Idempotency-Key"] = request_id
        request.state.request_id = request_id  # for an error's answer too (api.errors)
        cmd = command.model_validate({**body.model_dump(), "type": command_type})
        detail = await cases.act(case_id, cmd, request_id=request_id, actor=actor, session=session, temporal=temporal)
        await read_log.arecord([detail])
        return detail

    endpoint.__name__ = f"act_{command_type}"
    router.add_api_route(
        f"/cases/{{case_id}}/actions/{command_type}",
        endpoint,
        methods=["POST"],
        response_model=CaseDetail,
        dependencies=[allow(*roles)],
        tags=_tags(roles),
        summary=what[0].upper() + what[1:],
        operation_id=f"act_{command_type}",
        description=(
            f"Roles: {', '.join(sorted(r.value for r in roles))}. "
            f"Stages: {where}.\n\n"
            "Answers the case as it stands after the action. 409 with the reason when the case refuses it "
            "now (stage, assignment, region, a rule). `Idempotency-Key`: a retry with the same key changes "
            "the case once and answers like the first (a key reused on this case for another action answers "
            "with that first action's result); without one a key is generated (see the response header) and "
            "a retry acts again.\n\n"
            "**202** when the case accepted the action but did not finish it in time (it will); **503** + "
            "`Retry-After` when the case's worker did not take it up in time: retry with the same key."
        ),
    )


for _type in COMMAND_TYPES:
    _add_route(_type)
