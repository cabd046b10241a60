"""Who sees a caller in full (disputeflow.privacy): the role table, case by case, and the masks."""

from __future__ import annotations

import pytest

from disputeflow.domain.actions import Actor
from disputeflow.domain.enums import Role, Stage
from disputeflow.privacy import CaseFacts, mask_name, mask_phone, sees_caller, sees_id_number

OP = Actor(user_id="op-1", role=Role.operator, region_code="370102")
OP_ELSEWHERE = Actor(user_id="op-bj", role=Role.operator, region_code="110105")
MED = Actor(user_id="med-1", role=Role.mediator, region_code="370102")
MED_OTHER = Actor(user_id="med-2", role=Role.mediator, region_code="370102")
LA = Actor(user_id="la-1", role=Role.legal_aid_officer, region_code="370102")
SUP = Actor(user_id="sup-1", role=Role.supervisor, region_code="3701")
AUD = Actor(user_id="aud-1", role=Role.auditor, region_code="37")


def facts(stage: Stage, mediator: str | None = None) -> CaseFacts:
    return CaseFacts(stage=stage, region_code="370102", mediator_id=mediator)


@pytest.mark.parametrize(("actor", "stage", "full"), [
    (OP, Stage.triage, True), (OP, Stage.follow_up, True), (OP, Stage.legal_aid_review, True),
    (OP, Stage.mediation, False), (OP, Stage.closed, False), (OP_ELSEWHERE, Stage.triage, False),
    (MED, Stage.mediation, True), (MED, Stage.agreement, True), (MED, Stage.follow_up, False),
    (MED_OTHER, Stage.mediation, False), (MED, Stage.closed, False),
    (LA, Stage.legal_aid_review, True), (LA, Stage.legal_aid_representation, True), (LA, Stage.triage, False),
    (LA, Stage.mediation, False), (SUP, Stage.closed, True), (SUP, Stage.mediation, True),
    (AUD, Stage.triage, False), (AUD, Stage.closed, False), (None, Stage.triage, False),
])
def test_who_sees_the_caller_in_full(actor: Actor | None, stage: Stage, full: bool) -> None:
    assert sees_caller(actor, facts(stage, mediator="med-1")) is full


def test_only_the_regions_legal_aid_officer_on_a_legal_aid_stage_sees_the_identity_card_number() -> None:
    assert sees_id_number(LA, facts(Stage.legal_aid_review))
    assert not sees_id_number(LA, facts(Stage.triage))
    assert not sees_id_number(Actor(user_id="la-bj", role=Role.legal_aid_officer, region_code="1101"),
                              facts(Stage.legal_aid_review))
    for other in (OP, MED, SUP, AUD):
        assert not sees_id_number(other, facts(Stage.legal_aid_review, mediator="med-1"))


def test_masks() -> None:
    assert mask_phone("+8613800138000") == "138****8000"
    assert mask_phone("+8653186012348") == "531****2348"  # a Jinan landline
    assert mask_name("张三") == "张*" and mask_name("欧阳娜娜") == "欧***" and mask_name("A") == "A*"
    assert "0013" not in mask_phone("+8613800138000")
