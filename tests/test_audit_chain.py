"""The tamper-evident audit log, on SQLite and PostgreSQL."""

from __future__ import annotations

import threading
from datetime import datetime, timedelta, timezone
from enum import Enum

import pytest
from sqlalchemy import func, select, text
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError
from sqlmodel import Session

from disputeflow.db.audit import (
    GENESIS_HASH,
    REASON_COLUMNS,
    REASON_GAP,
    REASON_HASH,
    REASON_PREV,
    AuditEvent,
    append_events,
    canonical_json,
    chain_hash,
    entries_for_case,
    install_append_only_guards,
    verify_chain,
)
from disputeflow.db.engine import create_schema, is_sqlite, write_session
from disputeflow.db.models import AuditEntry

NOW = datetime(2024, 5, 1, 10, 30, tzinfo=timezone(timedelta(hours=8)))


def events(case_id: str, n: int, start: int = 1) -> list[AuditEvent]:
    return [
        AuditEvent(
            case_id=case_id,
            event_seq=seq,
            event_type="case_opened" if seq == 1 else "note_added",
            payload={"seq": seq, "text": f"调解进展 第{seq}次", "at": NOW + timedelta(minutes=seq)},
        )
        for seq in range(start, start + n)
    ]


def append(engine: Engine, evs: list[AuditEvent], now: datetime = NOW) -> list[int]:
    with write_session(engine) as session:
        return [entry.id for entry in append_events(session, evs, now=now)]


def verify(engine: Engine, **kw):
    with Session(engine) as session:
        return verify_chain(session, **kw)


def count(engine: Engine) -> int:
    with Session(engine) as session:
        return session.execute(select(func.count()).select_from(AuditEntry)).scalar_one()


def as_attacker(engine: Engine, sql: str, **params) -> None:
    """Someone with admin rights: switch the guard triggers off, run `sql`, switch them back on."""
    with engine.begin() as conn:
        if is_sqlite(engine):
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_update")
            conn.exec_driver_sql("DROP TRIGGER audit_log_no_delete")
            conn.execute(text(sql), params)
        else:
            conn.exec_driver_sql("ALTER TABLE audit_log DISABLE TRIGGER audit_log_append_only")
            conn.execute(text(sql), params)
            conn.exec_driver_sql("ALTER TABLE audit_log ENABLE TRIGGER audit_log_append_only")
    install_append_only_guards(engine)


# -- Canonical form ----------------------------------------------------------------------------


def test_canonical_json_is_stable_for_key_order_and_chinese_text() -> None:
    a = {"b": 1, "a": {"y": [1, 2.5, None], "x": "张三 与 李四 的 劳动争议"}, "when": NOW}
    b = {"when": NOW.astimezone(timezone.utc), "a": {"x": "张三 与 李四 的 劳动争议", "y": (1, 2.5, None)}, "b": 1}
    assert canonical_json(a) == canonical_json(b)
    assert canonical_json(a) == (
        '{"a":{"x":"张三 与 李四 的 劳动争议","y":[1,2.5,null]},"b":1,"when":"2024-05-01T02:30:00.000000Z"}'
    )

    class Stage(str, Enum):
        MEDIATION = "mediation"

    assert canonical_json({"stage": Stage.MEDIATION, "tags": {"b", "a"}}) == '{"stage":"mediation","tags":["a","b"]}'
    with pytest.raises(ValueError, match="naive"):
        canonical_json({"at": datetime(2024, 5, 1)})
    with pytest.raises(ValueError):
        canonical_json({"x": float("nan")})


def test_chain_hash_is_sha256_of_prev_newline_canonical() -> None:
    import hashlib

    assert chain_hash(GENESIS_HASH, "{}") == hashlib.sha256(("0" * 64 + "\n{}").encode()).hexdigest()
    assert chain_hash(GENESIS_HASH, "调解") == hashlib.sha256(("0" * 64 + "\n调解").encode("utf-8")).hexdigest()


# -- Appending and verifying -------------------------------------------------------------------


def test_events_of_two_cases_build_one_verifiable_chain(engine: Engine) -> None:
    assert verify(engine).model_dump() == {"ok": True, "checked": 0, "head_hash": None, "first_broken": None}

    ids = append(engine, events("A", 3))
    ids += append(engine, events("B", 2))
    ids += append(engine, events("A", 2, start=4))
    assert ids == list(range(1, 8))

    report = verify(engine, batch_size=3)  # several batches
    assert report.ok and report.checked == 7 and report.first_broken is None
    with Session(engine) as session:
        chain = session.execute(select(AuditEntry).order_by(AuditEntry.id)).scalars().all()
        assert chain[0].prev_hash == GENESIS_HASH
        for prev, entry in zip(chain, chain[1:]):
            assert entry.prev_hash == prev.hash
        assert report.head_hash == chain[-1].hash
        a = entries_for_case(session, "A")
        assert [(e.event_seq, e.event_type) for e in a] == [(1, "case_opened")] + [(s, "note_added") for s in (2, 3, 4, 5)]
        assert "调解进展 第1次" in a[0].canonical  # readable, not \u escaped
        assert a[0].recorded_at.replace(tzinfo=timezone.utc) == NOW or a[0].recorded_at == NOW


def test_re_appending_the_same_events_adds_nothing(engine: Engine) -> None:
    append(engine, events("A", 3) + events("B", 3))
    head = verify(engine).head_hash

    assert append(engine, events("A", 3), now=NOW + timedelta(hours=1)) == []  # a retried activity
    assert append(engine, events("A", 2) + events("A", 1, start=4)) == [7]  # only the new one
    assert append(engine, events("C", 1) + events("C", 1)) == [8]  # repeated within one batch

    assert count(engine) == 8
    report = verify(engine)
    assert report.ok and report.checked == 8 and report.head_hash != head


def test_two_appends_in_one_transaction_chain_onto_each_other(engine: Engine) -> None:
    with write_session(engine) as session:
        first = append_events(session, events("A", 2), now=NOW)
        second = append_events(session, events("B", 2), now=NOW)
        assert second[0].prev_hash == first[-1].hash
    assert verify(engine).checked == 4


def test_nothing_is_written_when_the_caller_rolls_back(engine: Engine) -> None:
    append(engine, events("A", 2))
    with pytest.raises(RuntimeError), write_session(engine) as session:
        append_events(session, events("B", 2), now=NOW)
        raise RuntimeError("the projection failed")
    assert append(engine, events("B", 2)) == [3, 4]  # ids stay contiguous after a rollback
    assert verify(engine).ok


# -- Tampering ---------------------------------------------------------------------------------


def test_altered_entry_is_detected_at_exactly_that_entry(engine: Engine) -> None:
    append(engine, events("A", 3) + events("B", 3))
    with Session(engine) as session:
        victim = session.get(AuditEntry, 4)
        assert victim is not None
        forged = victim.canonical.replace("调解进展", "调解失败")
        assert forged != victim.canonical

    as_attacker(engine, "UPDATE audit_log SET canonical = :c WHERE id = 4", c=forged)

    report = verify(engine)
    assert not report.ok and report.checked == 3
    assert report.first_broken is not None
    assert report.first_broken.model_dump() == {"entry_id": 4, "case_id": "B", "event_seq": 1, "reason": REASON_HASH}


def test_altered_entry_with_recomputed_hash_breaks_the_next_link(engine: Engine) -> None:
    append(engine, events("A", 5))
    with Session(engine) as session:
        victim = session.get(AuditEntry, 3)
        assert victim is not None
        forged = victim.canonical.replace("第3次", "第9次")
        new_hash = chain_hash(victim.prev_hash, forged)
    as_attacker(engine, "UPDATE audit_log SET canonical = :c, hash = :h WHERE id = 3", c=forged, h=new_hash)

    broken = verify(engine).first_broken
    assert broken is not None and (broken.entry_id, broken.reason) == (4, REASON_PREV)


def test_altered_column_outside_the_hashed_text_is_detected(engine: Engine) -> None:
    append(engine, events("A", 3))
    as_attacker(engine, "UPDATE audit_log SET event_type = 'case_closed' WHERE id = 2")
    broken = verify(engine).first_broken
    assert broken is not None and (broken.entry_id, broken.reason) == (2, REASON_COLUMNS)


def test_deleted_middle_entry_is_detected(engine: Engine) -> None:
    append(engine, events("A", 3) + events("B", 3))
    as_attacker(engine, "DELETE FROM audit_log WHERE id = 3")

    report = verify(engine, batch_size=2)
    assert not report.ok and report.checked == 2
    assert report.first_broken is not None
    assert (report.first_broken.entry_id, report.first_broken.reason) == (4, REASON_GAP)


def test_guards_reject_update_and_delete(engine: Engine) -> None:
    append(engine, events("A", 2))
    install_append_only_guards(engine)  # idempotent: again at every startup
    create_schema(engine)

    for sql in (
        "UPDATE audit_log SET canonical = 'x' WHERE id = 1",
        "UPDATE audit_log SET recorded_at = recorded_at",
        "DELETE FROM audit_log WHERE id = 2",
        "DELETE FROM audit_log",
    ):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text(sql))
    if not is_sqlite(engine):
        with pytest.raises(IntegrityError, match="append-only"), engine.begin() as conn:
            conn.execute(text("TRUNCATE audit_log"))

    assert count(engine) == 2 and verify(engine).ok
    append(engine, events("A", 1, start=3))  # inserts still work
    assert verify(engine).checked == 3


# -- Concurrency -------------------------------------------------------------------------------


def _run_threads(n: int, target) -> None:
    barrier = threading.Barrier(n)
    errors: list[BaseException] = []

    def run(i: int) -> None:
        try:
            barrier.wait(timeout=30)
            target(i)
        except BaseException as exc:  # noqa: BLE001 - reported below
            errors.append(exc)

    threads = [threading.Thread(target=run, args=(i,)) for i in range(n)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=120)
    assert not any(t.is_alive() for t in threads), "an appender hung"
    assert not errors, errors


def test_concurrent_appenders_never_fork_the_chain(engine: Engine) -> None:
    cases = [f"CASE-{i}" for i in range(8)]

    def appender(i: int) -> None:
        for ev in events(cases[i], 25):  # one transaction per event: maximal interleaving
            with write_session(engine) as session:
                append_events(session, [ev], now=datetime.now(timezone.utc))

    _run_threads(8, appender)

    report = verify(engine, batch_size=64)
    assert report.ok, report.first_broken
    assert report.checked == 200
    with Session(engine) as session:
        rows = session.execute(select(AuditEntry.id, AuditEntry.prev_hash, AuditEntry.case_id, AuditEntry.event_seq)).all()
    assert sorted(r.id for r in rows) == list(range(1, 201))
    assert len({r.prev_hash for r in rows}) == 200  # no two entries share a parent: no fork
    assert {(r.case_id, r.event_seq) for r in rows} == {(c, s) for c in cases for s in range(1, 26)}  # none lost
    with Session(engine) as session:
        for case_id in cases:  # each case's events in its own order along the chain
            ids = [e.id for e in entries_for_case(session, case_id)]
            assert ids == sorted(ids)


def test_a_retry_racing_the_original_writes_nothing_twice(engine: Engine) -> None:
    batch = events("A", 10)

    def appender(_i: int) -> None:
        with write_session(engine) as session:
            append_events(session, batch, now=datetime.now(timezone.utc))

    _run_threads(4, appender)
    assert count(engine) == 10
    assert verify(engine).ok


# -- CLI ---------------------------------------------------------------------------------------


def test_cli_verify_audit_exit_codes(
    engine: Engine, database_url: str, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from disputeflow import cli
    from disputeflow.db.engine import engine_for
    from disputeflow.settings import get_settings

    monkeypatch.setenv("DATABASE_URL", database_url)
    get_settings.cache_clear()
    try:
        assert cli.main(["verify-audit"]) == 0
        assert "audit chain intact: 0 entries" in capsys.readouterr().out

        append(engine, events("A", 3) + events("B", 2))
        head = verify(engine).head_hash
        assert cli.main(["verify-audit"]) == 0
        assert capsys.readouterr().out.strip() == f"audit chain intact: 5 entries, head {head}"
        assert cli.main(["verify-audit", "--expect-head", str(head)]) == 0
        capsys.readouterr()

        as_attacker(engine, "DELETE FROM audit_log WHERE id = 5")  # cut off the tail
        assert cli.main(["verify-audit"]) == 0  # the chain alone cannot tell ...
        capsys.readouterr()
        assert cli.main(["verify-audit", "--expect-head", str(head)]) == 1  # ... a recorded head can
        assert "does not contain the expected head" in capsys.readouterr().out

        as_attacker(engine, "UPDATE audit_log SET canonical = canonical || ' ' WHERE id = 2")
        assert cli.main(["verify-audit"]) == 1
        out = capsys.readouterr().out
        assert "BROKEN at entry 2 (case A, event 2)" in out and REASON_HASH in out
    finally:
        engine_for(database_url).dispose()
        get_settings.cache_clear()
