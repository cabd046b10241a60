"""Choosing the least-loaded mediator is right when many cases choose at once."""

from __future__ import annotations

import asyncio
from collections import Counter

from sqlmodel import Session, select

from disputeflow.db.models import CaseRecord
from tests.workflows.conftest import OPERATOR, SUPERVISOR, CaseDriver

LABOUR_MEDIATORS_OF_370102 = ("med-370102-01", "med-370102-02", "med-370102-03")


def mediation_loads(driver: CaseDriver) -> Counter:
    with Session(driver.engine) as session:
        rows = session.exec(select(CaseRecord.mediator_id).where(CaseRecord.stage.in_(("mediation", "agreement")),
                                                                 CaseRecord.mediator_id.is_not(None)))
        return Counter(rows)


async def test_ten_cases_sent_to_mediation_at_once_spread_over_the_mediators(driver: CaseDriver) -> None:
    handles = [await driver.open() for _ in range(10)]
    for handle in handles:
        await driver.view(handle)
    views = await asyncio.gather(*(driver.act(h, OPERATOR, {"type": "send_to_mediation"}) for h in handles))
    chosen = Counter(v.mediator.id for v in views)
    assert set(chosen) == set(LABOUR_MEDIATORS_OF_370102)
    assert sorted(chosen.values()) == [3, 3, 4]  # as even as ten cases over three people can be
    assert mediation_loads(driver) == chosen  # the read model agrees with what the cases hold
    for handle in handles:
        await driver.act(handle, SUPERVISOR, {"type": "withdraw", "reason": "测试结束"})
