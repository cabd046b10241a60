"""The policy a new case pins: read from the policy file, resolved for the case's facts, with its calendar.

Intake runs this before it starts the case's workflow, so the workflow opens with its state from
its first task, with no activity before it. The legacy workflow asks for the same through its
`pin_case_policy` activity. The file is re-read when it changes: a new version applies to cases
opened after it; a calendar is built once per region inputs and year.
"""

from __future__ import annotations

import threading
from datetime import date, datetime
from functools import lru_cache
from pathlib import Path

from disputeflow.contracts import CaseStart
from disputeflow.domain.actions import Actor
from disputeflow.domain.calendar import SHANGHAI, CalendarData, OfficeHours, calendar_data_from_holidays
from disputeflow.domain.intake import Intake
from disputeflow.domain.policy import CaseFacts, CasePolicy, PolicyTable, load_policy, region_calendar_inputs, resolve_case_policy

PINNED_POLICIES = 4096  # resolved policies remembered (facts x year); all forgotten when full
PINNED_CALENDAR_YEARS = 3  # the opening year and the two after it; beyond, weekdays (with a warning)


@lru_cache(maxsize=256)
def _calendar(year: int, extra_holidays: tuple[date, ...], extra_workdays: tuple[date, ...],
              office_hours: tuple[OfficeHours, ...]) -> CalendarData:
    return calendar_data_from_holidays(years=range(year, year + PINNED_CALENDAR_YEARS), extra_holidays=extra_holidays,
                                       extra_workdays=extra_workdays, office_hours=office_hours)


class PolicyPins:
    """Pins policies from one policy file; safe to share between threads."""

    def __init__(self, policy_file: Path) -> None:
        self._file = policy_file
        self._loaded: tuple[float, PolicyTable] | None = None
        self._lock = threading.Lock()
        self._pinned: dict[tuple, tuple[PolicyTable, CasePolicy]] = {}

    def current(self) -> PolicyTable:
        mtime = self._file.stat().st_mtime
        with self._lock:
            if self._loaded is None or self._loaded[0] != mtime:
                self._loaded = (mtime, load_policy(self._file))
            return self._loaded[1]

    def pin(self, facts: CaseFacts, opened_on: date) -> CasePolicy:
        """`opened_on`: the Asia/Shanghai day the case opens, which decides the calendar's years.
        The same facts in the same year and policy version pin the same (immutable) policy, so it is
        resolved once and remembered."""
        policy = self.current()
        key = (id(policy), opened_on.year, facts.region_code, facts.category, facts.dispute_type, facts.urgency,
               tuple(sorted(facts.special_groups)))
        pinned = self._pinned.get(key)
        if pinned is not None and pinned[0] is policy:
            return pinned[1]
        extra_holidays, extra_workdays, office_hours = region_calendar_inputs(policy, facts.region_code)
        calendar = _calendar(opened_on.year, tuple(extra_holidays), tuple(extra_workdays), tuple(office_hours))
        resolved = resolve_case_policy(policy, facts, calendar)
        with self._lock:
            if len(self._pinned) >= PINNED_POLICIES:
                self._pinned.clear()
            self._pinned[key] = (policy, resolved)
        return resolved

    def start(self, case_id: str, intake: Intake, *, registered_at: datetime, registered_by: Actor | None) -> CaseStart:
        """What a new case's workflow opens with: the policy pinned for the day of the call, and
        the instant of the call, from which every first deadline runs."""
        facts = CaseFacts(region_code=intake.region_code, category=intake.category, dispute_type=intake.dispute_type,
                          urgency=intake.urgency, special_groups=intake.special_groups)
        policy = self.pin(facts, registered_at.astimezone(SHANGHAI).date())
        return CaseStart(case_id=case_id, intake=intake, registered_by=registered_by, registered_at=registered_at,
                         policy=policy)
