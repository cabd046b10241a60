"""Activities of the case workflow. Each is idempotent: Temporal may run one more than once."""

from __future__ import annotations

import threading
from contextlib import nullcontext
from datetime import datetime, timezone
from pathlib import Path

from sqlalchemy.engine import Engine
from sqlmodel import Session
from sqlalchemy.exc import DataError
from temporalio import activity
from temporalio.exceptions import ApplicationError

from disputeflow.case_keys import CaseKeyStore, CaseKeyUnavailable
from disputeflow.contracts import ChoosePersonInput, FindPersonInput, PinPolicyInput, Projection, ProjectionRefusal
from disputeflow.db import cases, notifications, reference
from disputeflow.db.engine import is_sqlite, write_session
from disputeflow.db.models import Lawyer, Mediator
from disputeflow.domain.case import Assignee
from disputeflow.domain.policy import CasePolicy
from disputeflow.pinning import PolicyPins


def _assignee(person: Mediator | Lawyer | None) -> Assignee | None:
    return None if person is None else Assignee(id=person.id, name=person.name, region_code=person.region_code)


PROJECTION_REFUSED = "ProjectionRefused"


class CaseActivities:
    def __init__(self, engine: Engine, policy_file: Path, case_keys: CaseKeyStore | None = None) -> None:
        self._engine = engine
        self._case_keys = case_keys  # the audit entries' free text is encrypted with the case's data key
        self._pins = PolicyPins(policy_file)
        # SQLite has one writer at a time; queueing this worker's writers here instead of letting
        # them spin on the database's busy timeout cut the worst breach-projection delay from ~9 s
        # to under 2 s in benchmarks/breach_lateness.py. PostgreSQL needs no such lock.
        self._write_lock = threading.Lock() if engine is not None and is_sqlite(engine) else nullcontext()

    @activity.defn
    def pin_case_policy(self, inp: PinPolicyInput) -> CasePolicy:
        """Legacy cases only: new cases are opened with the policy intake pinned."""
        return self._pins.pin(inp.facts, inp.opened_on)

    # Choosing takes the write lock and books the choice on the case's read-model row in the same
    # transaction, so choices made at the same time see each other's load.

    @activity.defn
    def choose_mediator(self, inp: ChoosePersonInput) -> Assignee | None:
        with self._write_lock, write_session(self._engine) as session:
            return _assignee(reference.choose_mediator(
                session, region_code=inp.region_code, dispute_type=inp.dispute_type.value, exclude=inp.exclude,
                for_case=inp.case_id))

    @activity.defn
    def choose_lawyer(self, inp: ChoosePersonInput) -> Assignee | None:
        with self._write_lock, write_session(self._engine) as session:
            return _assignee(reference.choose_lawyer(
                session, region_code=inp.region_code, dispute_type=inp.dispute_type.value, exclude=inp.exclude,
                for_case=inp.case_id))

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
        """Write the case, its tasks, clocks, new events, notifications and audit entries in one transaction.

        A database that refuses the data itself (PostgreSQL's DataError: a NUL in a text column, a
        value out of range) will refuse it on every retry: that fails at once, non-retryable, naming
        only the kind of refusal. Anything else (the database down, locked) is retried."""
        # The key first, outside the write transaction (made now if the case has none yet: one that
        # opened while the database was away). A database that fails here is retried like any other.
        key = None
        if self._case_keys is not None:
            try:
                key = self._case_keys.get(projection.case_id, create=True)
            except CaseKeyUnavailable as exc:
                raise ApplicationError(f"the case's data key cannot be read: {exc}") from None
        try:
            with self._write_lock, write_session(self._engine) as session:
                return cases.apply_projection(session, projection, now=datetime.now(timezone.utc), key=key)
        except DataError as exc:
            raise ApplicationError(f"the read model refuses this case's data ({type(exc.orig).__name__})",
                                   type=PROJECTION_REFUSED, non_retryable=True) from None

    @activity.defn
    def report_projection_refused(self, refusal: ProjectionRefusal) -> None:
        """Tell the case's supervisors, by the case number alone, that it cannot reach the read model."""
        with self._write_lock, write_session(self._engine) as session:
            notifications.add_system_notice(
                session, case_id=refusal.case_id, region_code=refusal.region_code, kind="read_model_refused",
                key=f"{refusal.case_id}:{refusal.event_seq}:read_model_refused", payload={"reason": refusal.reason},
                now=datetime.now(timezone.utc))

    def all(self) -> list:
        return [self.pin_case_policy, self.choose_mediator, self.choose_lawyer, self.find_mediator,
                self.find_lawyer, self.project_case, self.report_projection_refused]
