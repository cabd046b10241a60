"""The retention sweep's activity: anonymise closed cases past the policy's retention period."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone
from pathlib import Path

from sqlalchemy.engine import Engine
from temporalio import activity

from disputeflow.case_keys import forget_everywhere
from disputeflow.db.engine import write_session
from disputeflow.db.erasure import ErasureReason, erase_case, expired_cases
from disputeflow.domain.policy import load_policy

BATCH = 50  # cases per activity run (one transaction)


class RetentionActivities:
    def __init__(self, engine: Engine, policy_file: Path) -> None:
        self._engine = engine
        self._policy_file = policy_file

    @activity.defn
    def erase_expired_cases(self) -> int:
        """Anonymise up to BATCH closed cases past retention; returns how many. Idempotent: an erased
        case is not found again."""
        retention = timedelta(days=load_policy(self._policy_file).retention.closed_case_days)
        now = datetime.now(timezone.utc)
        with write_session(self._engine) as session:
            due = expired_cases(session, now=now, retention=retention, limit=BATCH)
            for case_id in due:
                erase_case(session, case_id, now=now, reason=ErasureReason.retention_expired)
        forget_everywhere(due)  # committed: no key of theirs stays in this process's memory
        if due:
            activity.logger.info("retention: %d case(s) anonymised", len(due))  # counts only, no case data
        return len(due)

    def all(self) -> list:
        return [self.erase_expired_cases]
