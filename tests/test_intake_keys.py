"""Idempotency-Keys of POST /cases: per user, bound to the body, expiring, on SQLite and PostgreSQL."""

from __future__ import annotations

from datetime import datetime, timedelta, timezone

import pytest
from sqlalchemy import text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from disputeflow.db import migrate
from disputeflow.db.engine import make_engine, write_session
from disputeflow.db.intake import (
    IntakeKeyReused,
    claim_intake_key,
    delete_expired_intake_keys,
    release_intake_key,
)
from disputeflow.db.models import IntakeRequest

T0 = datetime(2026, 12, 2, 1, tzinfo=timezone.utc)
TTL = timedelta(hours=24)


def claim(engine: Engine, key: str, fingerprint: str = "f" * 64, *, owner: str = "op-1",
          now: datetime = T0):
    with write_session(engine) as session:
        return claim_intake_key(session, key=key, fingerprint=fingerprint, region_code="370102", now=now,
                                owner=owner, ttl=TTL)


def rows(engine: Engine) -> list[tuple[str, str]]:
    with Session(engine) as session:
        return sorted((r.owner, r.idempotency_key) for r in session.exec(select(IntakeRequest)))


def test_a_key_stands_for_one_case_of_its_user(engine: Engine) -> None:
    first = claim(engine, "call-0001")
    again = claim(engine, "call-0001", now=T0 + timedelta(hours=1))
    assert first.created and not again.created and again.case_id == first.case_id


def test_the_same_key_from_another_user_is_another_key(engine: Engine) -> None:
    mine = claim(engine, "call-0001", owner="op-1")
    theirs = claim(engine, "call-0001", "e" * 64, owner="op-2")  # even with another body: no clash
    assert theirs.created and theirs.case_id != mine.case_id
    assert rows(engine) == [("op-1", "call-0001"), ("op-2", "call-0001")]
    with write_session(engine) as session:
        release_intake_key(session, key="call-0001", case_id=theirs.case_id, owner="op-2")
    assert rows(engine) == [("op-1", "call-0001")]  # only that user's


def test_reuse_with_another_body_is_refused_without_naming_the_case(engine: Engine) -> None:
    first = claim(engine, "call-0001")
    with pytest.raises(IntakeKeyReused) as refused:
        claim(engine, "call-0001", "e" * 64)
    message = str(refused.value)
    assert "different body" in message
    assert first.case_id not in message and "call-0001" not in message and "370102" not in message


def test_a_key_expires_and_expired_keys_are_deleted(engine: Engine) -> None:
    first = claim(engine, "call-0001")
    claim(engine, "call-0002", owner="op-2", now=T0 + timedelta(hours=20))
    later = T0 + TTL + timedelta(seconds=1)
    # after its time the key is free again: a new body opens a new case, no 422
    renewed = claim(engine, "call-0001", "e" * 64, now=later)
    assert renewed.created and renewed.case_id != first.case_id
    assert rows(engine) == [("op-1", "call-0001"), ("op-2", "call-0002")]  # the younger key stays
    with write_session(engine) as session:
        assert delete_expired_intake_keys(session, now=T0 + timedelta(hours=20) + TTL, ttl=TTL) == 1
    assert rows(engine) == [("op-1", "call-0001")]


def test_keys_recorded_before_revision_0004_are_kept(database_url: str) -> None:
    engine = make_engine(database_url)
    try:
        with engine.begin() as conn:
            migrate.upgrade(conn, "0002")
            conn.execute(text("INSERT INTO intake_requests (idempotency_key, case_id, fingerprint, created_at) "
                              "VALUES ('old-key', '370102-20261201-0001', :f, :t)"), {"f": "f" * 64, "t": T0})
        with engine.begin() as conn:
            migrate.upgrade(conn, "0004")
        assert rows(engine) == [("", "old-key")]
        claim(engine, "old-key", owner="op-1")  # the same key of a user is another key
        assert rows(engine) == [("", "old-key"), ("op-1", "old-key")]
        with engine.begin() as conn:
            migrate.downgrade(conn, "0002")
            kept = conn.execute(text("SELECT idempotency_key, case_id FROM intake_requests")).all()
        assert kept == [("old-key", "370102-20261201-0001")]  # the oldest of the key stays
    finally:
        engine.dispose()
