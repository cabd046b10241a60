"""A forecast of a past period from its real arrivals, beside what the read model shows happened."""

from __future__ import annotations

from datetime import datetime

from sqlmodel import Session, func, select

from disputeflow.db.engine import create_schema, make_engine
from disputeflow.db.models import CaseRecord
from disputeflow.db.seed import seed
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.forecast.backtest import backtest
from disputeflow.settings import DEFAULT_POLICY_FILE


def test_a_back_test_feeds_the_periods_arrivals_and_compares_per_clock(tmp_path) -> None:
    engine = make_engine(f"sqlite:///{tmp_path / 'seed.db'}")
    create_schema(engine)
    # Four weeks ending Monday 2 November 2026, the National Day holiday (1-7 October) included.
    seed(engine, cases=1200, seed=5, now=datetime(2026, 11, 2, tzinfo=SHANGHAI), days=28, policy_file=DEFAULT_POLICY_FILE)
    with Session(engine) as session:
        in_region = session.exec(select(func.count()).select_from(CaseRecord)
                                 .where(CaseRecord.region_code == "370102")).one()
    result = backtest(engine, {"region_code": "370102", "start": "2026-10-05", "weeks": 4, "runs": 1,
                               "staff": {"mediator": {"count": 6, "per_day": 4}}}, policy_file=DEFAULT_POLICY_FILE)
    engine.dispose()
    assert result.cases == in_region > 20  # every real arrival of the period, no drawn ones
    assert result.forecast.cases_simulated == result.cases
    # the period's own outcome mix: the seeder sends most disputes to mediation, and says so in its events
    taken = {e.share: e for e in result.outcomes if e.taken}
    assert taken["dispute_to_mediation"].seen > 10
    assert result.forecast.spec.outcomes.dispute_to_mediation == taken["dispute_to_mediation"].value
    triage = next(r for r in result.rows if r.clock == "triage_response")
    assert triage.actual is not None and triage.forecast is not None and triage.actual_rated > 10
    assert triage.error == triage.forecast - triage.actual
    assert result.mean_absolute_error is not None and 0 <= result.mean_absolute_error <= 1
