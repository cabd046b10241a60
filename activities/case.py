"""Activities of the case workflow. Each is idempotent: Temporal may run one more than once."""

from __future__ import annotations

import threading
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session
from temporalio import activity

from disputeflow.contracts import ChoosePersonInput, FindPersonInput, PinPolicyInput, Projection
from disputeflow.db import cases, reference
from disputeflow.db.engine import is_sqlite, write_session
from disputeflow.db.models import Lawyer, Mediator
from disputeflow.domain.calendar import calendar_data_from_holidays
from disputeflow.domain.case import Assignee
from disputeflow.domain.policy import CasePolicy, PolicyTable, load_policy, region_calendar_inputs, resolve_case_policy

PINNED_CALENDAR_YEARS = 3  # the opening year and the two after it; beyond, weekdays (with a warning)


def _assignee(person: Mediator | Lawyer | None) -> Assignee | None:
    return None if person is None else Assignee(id=person.id, name=person.name, region_code=person.region_code)


class CaseActivities:
    def __init__(self, engine: Engine, policy_file: Path) -> None:
        self._engine = engine
        self._policy_file = policy_file
        self._policy: tuple[float, PolicyTable] | None = None
        # SQLite has one writer at a time; queueing this worker's writers here instead of letting
        # them spin on the database's busy timeout cut the worst breach-projection delay from ~9 s
        # to under 2 s in benchmarks/breach_lateness.py. PostgreSQL needs no such lock.
        self._write_lock = threading.Lock() if engine is not None and is_sqlite(engine) else nullcontext()

    def _current_policy(self) -> PolicyTable:
        """The policy file, re-read when it changes: a new version applies to cases opened after it."""
        mtime = self._policy_file.stat().st_mtime
        if self._policy is None or self._policy[0] != mtime:
            self._policy = (mtime, load_policy(self._policy_file))
        return self._policy[1]

    @activity.defn
    def pin_case_policy(self, inp: PinPolicyInput) -> CasePolicy:
        """Resolve the clocks and rules for a new case and pin them, with its calendar, into its history."""
        policy = self._current_policy()
        extra_holidays, extra_workdays, office_hours = region_calendar_inputs(policy, inp.facts.region_code)
        year = inp.opened_on.year
        calendar = calendar_data_from_holidays(
            years=range(year, year + PINNED_CALENDAR_YEARS),
            extra_holidays=extra_holidays, extra_workdays=extra_workdays, office_hours=office_hours,
        )
        return resolve_case_policy(policy, inp.facts, calendar)

    @activity.defn
    def choose_mediator(self, inp: ChoosePersonInput) -> Assignee | None:
        with Session(self._engine) as session:
            return _assignee(reference.choose_mediator(
                session, region_code=inp.region_code, dispute_type=inp.dispute_type.value, exclude=inp.exclude))

    @activity.defn
    def choose_lawyer(self, inp: ChoosePersonInput) -> Assignee | None:
        with Session(self._engine) as session:
            return _assignee(reference.choose_lawyer(
                session, region_code=inp.region_code, dispute_type=inp.dispute_type.value, exclude=inp.exclude))

    @activity.defn
    def find_mediator(self, inp: FindPersonInput) -> Assignee | None:
        with Session(self._engine) as session:
            return _assignee(reference.find_mediator(session, mediator_id=inp.person_id, region_code=inp.region_code))

    @activity.defn
    def find_lawyer(self, inp: FindPersonInput) -> Assignee | None:
        with Session(self._engine) as session:
            return _assignee(reference.find_lawyer(session, lawyer_id=inp.person_id, region_code=inp.region_code))

    @activity.defn
    def project_case(self, projection: Projection) -> int:
        """Write the case, its tasks, clocks, new events, notifications and audit entries in one transaction."""
        with self._write_lock, write_session(self._engine) as session:
            return cases.apply_projection(session, projection, now=datetime.now(timezone.utc))

    def all(self) -> list:
        return [self.pin_case_policy, self.choose_mediator, self.choose_lawyer, self.find_mediator,
                self.find_lawyer, self.project_case]
