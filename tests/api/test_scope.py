"""Object-level scope on every route that takes a case id: a case outside your region (or, for a
mediator, not assigned to you) answers 404 exactly like an unknown case, and nothing changes."""

from __future__ import annotations

import pytest

from api.app import create_app
from api.auth import api_routes
from disputeflow.db.models import CaseEventRecord
from disputeflow.domain.actions import COMMAND_TYPES
from disputeflow.domain.enums import Role
from disputeflow.domain.lifecycle import RULES
from tests.api.conftest import (
    AUDITOR,
    OPERATOR,
    OTHER_AUDITOR,
    OTHER_OFFICER,
    OTHER_OPERATOR,
    OTHER_SUPERVISOR,
    SUPERVISOR,
    Stack,
)

# A valid body for every action, so that only scope can stop the request.
VALID_BODIES = {
    "answer_consultation": {"answer": "答复"},
    "refer": {"body": "court", "organisation": "历下区人民法院"},
    "record_referral_outcome": {"accepted": True},
    "send_to_mediation": {},
    "open_legal_aid": {},
    "record_mediation_session": {"outcome": "partial"},
    "extend_mediation": {"both_parties_consent": True, "reason": "双方同意"},
    "record_judicial_confirmation": {"applied": True},
    "record_performance": {"performed": True},
    "escalate": {"reason": "需要协调"},
    "reassign_mediator": {"reason": "回避"},
    "send_to_legal_aid": {"reason": "转法律援助"},
    "refer_out": {"forum": "litigation", "legal_aid_offered": True},
    "request_materials": {"missing": ["收入证明"]},
    "materials_supplied": {},
    "assess_eligibility": {"monthly_income_per_capita": 1000},
    "decide_legal_aid": {"approve": False, "reason": "不符合条件"},
    "request_review": {"reason": "申请复议"},
    "decide_review": {"overturn": False, "reason": "维持"},
    "assign_lawyer": {"lawyer_id": "law-370102-01"},
    "record_legal_aid_outcome": {"outcome": "胜诉"},
    "record_return_visit": {"satisfaction": 4},
    "complete_review": {"resolution": "已处理"},
    "pause_clock": {"clock_id": "mediation_conclusion-3", "reason": "awaiting_party"},
    "resume_clock": {"clock_id": "mediation_conclusion-3"},
    "extend_clock": {"clock_id": "mediation_conclusion-3", "by": {"amount": 1, "unit": "calendar_days"}, "reason": "x"},
    "request_extension": {"clock_id": "mediation_conclusion-3", "by": {"amount": 5, "unit": "working_days"},
                          "reason": "需补充证据"},
    "decide_extension": {"clock_id": "mediation_conclusion-3", "approve": True, "reason": "同意"},
    "withdraw": {"reason": "撤回"},
}
assert set(VALID_BODIES) == set(COMMAND_TYPES)

OUTSIDERS = {Role.supervisor: OTHER_SUPERVISOR, Role.auditor: OTHER_AUDITOR, Role.legal_aid_officer: OTHER_OFFICER,
             Role.operator: OTHER_OPERATOR}
CASE_ROUTES = sorted((r.method, r.path, r.roles) for r in api_routes(create_app()) if "{case_id}" in r.path)


@pytest.fixture(scope="module")
async def mediation_case(stack: Stack) -> dict:
    return await stack.open_in_mediation()


def _not_assigned(case: dict) -> tuple[str, str, str]:
    return next((m, "mediator", "370102") for m in ("med-370102-01", "med-370102-02", "med-370102-03")
                if m != case["mediator"]["id"])


@pytest.mark.parametrize(("method", "path", "roles"), CASE_ROUTES, ids=[f"{m} {p}" for m, p, _ in CASE_ROUTES])
async def test_outside_your_scope_is_404(stack: Stack, mediation_case: dict, method: str, path: str,
                                         roles: frozenset[Role]) -> None:
    case_id = mediation_case["case_id"]
    body = VALID_BODIES[path.rsplit("/", 1)[1]] if "/actions/" in path else None
    if path.endswith("/erase"):
        body = {"reason": "data_subject_request", "reference": "DSR-2026-0001"}
    callers = [OUTSIDERS[role] for role in roles if role in OUTSIDERS]
    if Role.mediator in roles:
        callers.append(_not_assigned(mediation_case))
    assert callers
    events = stack.count(CaseEventRecord, CaseEventRecord.case_id == case_id)
    for who in callers:
        response = await stack.http.request(method, path.replace("{case_id}", case_id), headers=stack.auth(who),
                                            json=body if method == "POST" else None)
        assert response.status_code == 404, (who, response.text)
        assert response.json() == {"detail": f"case {case_id} not found"}  # the same words as an unknown case
    assert stack.count(CaseEventRecord, CaseEventRecord.case_id == case_id) == events


async def test_in_scope_they_see_it(stack: Stack, mediation_case: dict) -> None:
    case_id = mediation_case["case_id"]
    assigned = (mediation_case["mediator"]["id"], "mediator", "370102")
    for who in (OPERATOR, SUPERVISOR, AUDITOR, assigned, ("la-37", "legal_aid_officer", "37")):
        response = await stack.http.get(f"/cases/{case_id}", headers=stack.auth(who))
        assert response.status_code == 200, (who, response.text)
    for path in ("timeline", "history", "audit", "audit/check"):
        assert (await stack.http.get(f"/cases/{case_id}/{path}", headers=stack.auth(AUDITOR))).status_code == 200
    assert (await stack.http.post(f"/cases/{case_id}/replay", headers=stack.auth(SUPERVISOR))).status_code == 200


def test_every_action_route_is_checked() -> None:
    assert {p.rsplit("/", 1)[1] for _, p, _ in CASE_ROUTES if "/actions/" in p} == set(RULES)
