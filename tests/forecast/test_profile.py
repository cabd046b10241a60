"""The forecast's outcome mix from the read model's last weeks: from cases worked by the real rules
and projected by the real projection, and from `disputeflow seed`'s read model."""

from __future__ import annotations

from datetime import date, datetime, timedelta, timezone

import pytest
from sqlalchemy.engine import Engine

from activities.case import CaseActivities
from disputeflow.contracts import PinPolicyInput
from disputeflow.db.cases import apply_projection
from disputeflow.db.engine import create_schema, make_engine, write_session
from disputeflow.db.seed import seed
from disputeflow.domain import lifecycle
from disputeflow.domain.actions import Actor, ActionRequest
from disputeflow.domain.calendar import SHANGHAI, BusinessCalendar
from disputeflow.domain.case import Assignee, CaseState
from disputeflow.domain.enums import Role
from disputeflow.domain.policy import CaseFacts
from disputeflow.forecast.profile import MIN_SEEN, outcome_mix
from disputeflow.forecast.spec import Outcomes, SessionMix
from disputeflow.settings import DEFAULT_POLICY_FILE
from tests.test_projection import projection_of
from tests.workflows.conftest import OFFICER, OPERATOR, SUPERVISOR, make_intake

MONDAY = datetime(2026, 11, 2, 1, 0, tzinfo=timezone.utc)  # 09:00 in Shanghai
MEDIATOR = Actor(user_id="med-370102-01", role=Role.mediator, region_code="370102")


class Case:
    """A case worked by the real rules (`lifecycle`), each change projected into the read model."""

    def __init__(self, engine: Engine, n: int, at: datetime, region: str = "370102", **intake) -> None:
        self.engine, self.at = engine, at
        made = make_intake(region_code=region, **intake)
        facts = CaseFacts(region_code=made.region_code, category=made.category, dispute_type=made.dispute_type,
                          urgency=made.urgency, special_groups=made.special_groups)
        policy = CaseActivities(None, DEFAULT_POLICY_FILE).pin_case_policy(
            PinPolicyInput(facts=facts, opened_on=at.astimezone(SHANGHAI).date()))
        self.cal = BusinessCalendar(policy.calendar)
        self.state: CaseState = lifecycle.open_case(f"{region}-{at.astimezone(SHANGHAI):%Y%m%d}-{n:04d}", made,
                                                    policy, at, self.cal)
        self.seen = 0
        self._project()

    def _project(self) -> None:
        with write_session(self.engine) as session:
            apply_projection(session, projection_of(self.state, since=self.seen), now=self.at)
        self.seen = self.state.timeline[-1].seq

    def act(self, actor: Actor, **command) -> Case:
        self.at += timedelta(hours=1)
        request = ActionRequest.model_validate({"request_id": f"{self.state.case_id}-{self.seen}",
                                                "actor": actor.model_dump(), "command": command})
        lifecycle.apply(self.state, request, self.at, self.cal)
        wanted = self.state.wanted
        if wanted is not None:  # the workflow's search for a mediator or a lawyer, found at once
            person = MEDIATOR.user_id if wanted.kind == "mediator" else "law-370102-01"
            lifecycle.fill(self.state, wanted, Assignee(id=person, name=person, region_code="370102"),
                           self.at, self.cal)
        self._project()
        return self


def mediation(engine: Engine, n: int, at: datetime, *sessions: str) -> Case:
    case = Case(engine, n, at).act(OPERATOR, type="send_to_mediation")
    for outcome in sessions:
        case.act(MEDIATOR, type="record_mediation_session", outcome=outcome)
    return case


def test_the_mix_is_what_the_real_cases_of_the_window_show(sqlite_engine: Engine) -> None:
    at = lambda day: MONDAY + timedelta(days=day)  # noqa: E731
    n = iter(range(1, 1000))
    # Disputes: 6 sent to mediation, 2 referred at triage. Sessions: 4 agreements, 2 partial, 3 no
    # agreement, 1 party absent (10 sessions).
    mediation(sqlite_engine, next(n), at(0), "agreement")
    mediation(sqlite_engine, next(n), at(1), "partial", "agreement")
    mediation(sqlite_engine, next(n), at(2), "no_agreement", "partial", "agreement")
    mediation(sqlite_engine, next(n), at(3), "no_agreement", "party_absent", "agreement")
    mediation(sqlite_engine, next(n), at(4), "no_agreement")
    mediation(sqlite_engine, next(n), at(7))
    for day in (8, 9):
        Case(sqlite_engine, next(n), at(day)).act(OPERATOR, type="refer", body="other_department", organisation="相关部门")
    # Consultations: 5 answered, 1 referred (the referral does not count for the disputes' share).
    for day in range(5):
        Case(sqlite_engine, next(n), at(day), category="consultation").act(OPERATOR, type="answer_consultation",
                                                                           answer="已解答")
    Case(sqlite_engine, next(n), at(10), category="consultation").act(
        OPERATOR, type="refer", body="other_department", organisation="相关部门")
    # Legal aid: 4 approved, 2 refused.
    for i in range(6):
        approve = i < 4
        Case(sqlite_engine, next(n), at(i), category="legal_aid").act(
            OPERATOR, type="open_legal_aid").act(
            OFFICER, type="assess_eligibility", monthly_income_per_capita=500 if approve else 90_000).act(
            OFFICER, type="decide_legal_aid", approve=approve, reason="审查决定")
    # Outside the window or the region: not counted.
    mediation(sqlite_engine, next(n), MONDAY + timedelta(weeks=4, days=1), "party_absent", "party_absent")
    Case(sqlite_engine, next(n), at(2), region="370103").act(OPERATOR, type="send_to_mediation").act(
        MEDIATOR.model_copy(update={"region_code": "370103"}), type="record_mediation_session", outcome="no_agreement")

    given = Outcomes(referral_accepted=0.5)
    mix, evidence = outcome_mix_for(sqlite_engine, given)
    assert mix.sessions == SessionMix(agreement=0.4, partial=0.2, no_agreement=0.3, party_absent=0.1)
    assert mix.dispute_to_mediation == pytest.approx(6 / 8)
    assert mix.consultation_answered == pytest.approx(5 / 6)
    assert mix.legal_aid_approved == pytest.approx(4 / 6)
    seen = {e.share: e for e in evidence}
    assert seen["sessions.agreement"].seen == 4 and seen["sessions.agreement"].taken
    assert seen["dispute_to_mediation"].seen == 8
    # Nothing was recorded of referral replies: the given share stays, and says so.
    assert mix.referral_accepted == 0.5 and seen["referral_accepted"] == seen["referral_accepted"].model_copy(
        update={"value": 0.5, "seen": 0, "taken": False})
    assert mix.first_session_days == given.first_session_days  # the delays are always the given ones


def outcome_mix_for(engine: Engine, given: Outcomes | None = None):
    from sqlmodel import Session

    with Session(engine) as session:
        return outcome_mix(session, "370102", weeks=4, until=date(2026, 11, 29), given=given)


def test_a_share_seen_too_rarely_keeps_the_given_value(sqlite_engine: Engine) -> None:
    for i in range(MIN_SEEN - 1):
        mediation(sqlite_engine, i + 1, MONDAY + timedelta(days=i), "party_absent")
    mix, evidence = outcome_mix_for(sqlite_engine)
    assert mix.sessions == SessionMix()  # 4 sessions are not enough to set a mix
    assert not next(e for e in evidence if e.share == "sessions.party_absent").taken
    mediation(sqlite_engine, MIN_SEEN, MONDAY + timedelta(days=6), "party_absent")
    mix, _ = outcome_mix_for(sqlite_engine)
    assert mix.sessions.party_absent == 1.0


def test_the_seeded_read_model_gives_the_seeders_own_shares(tmp_path) -> None:
    """`disputeflow seed` sends 80% of its disputes to mediation (the rest referred) and approves 75%
    of its legal-aid applications. It records an agreement as reached but no failed session, so the
    sessions it shows all agree; and no referral reply, so that share stays as given."""
    engine = make_engine(f"sqlite:///{tmp_path / 'seed.db'}")
    create_schema(engine)
    seed(engine, cases=3000, seed=5, now=datetime(2026, 11, 30, tzinfo=SHANGHAI), days=28,
         policy_file=DEFAULT_POLICY_FILE)
    mix, evidence = outcome_mix_for(engine)
    engine.dispose()
    seen = {e.share: e for e in evidence}
    assert seen["dispute_to_mediation"].seen > 40 and seen["legal_aid_approved"].seen > 15
    assert mix.dispute_to_mediation == pytest.approx(0.8, abs=0.12)
    assert mix.legal_aid_approved == pytest.approx(0.75, abs=0.2)
    assert mix.sessions.agreement == 1.0 and seen["sessions.agreement"].taken
    assert mix.referral_accepted == Outcomes().referral_accepted and not seen["referral_accepted"].taken
