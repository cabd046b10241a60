"""Crypto-erasure on the real stack: a case's data key encrypts its Temporal payloads and its audit
entries' free text; erasing the case destroys the key, and both are unreadable from then on, while
other cases read as before and the audit chain still verifies.

A real dev server, the API and a worker as `make run` runs them; the history is fetched from the
server as it keeps it and decoded by codecs of this process and of a "new process" (nothing cached).
"""

from __future__ import annotations

import asyncio
import base64
import json
import uuid
from datetime import UTC, datetime
from pathlib import Path

import httpx
import pytest
from google.protobuf import json_format
from sqlmodel import Session, select
from temporalio.api.common.v1 import Payloads
from temporalio.client import Client
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from disputeflow import cli
from disputeflow.case_keys import CaseKeyStore, open_free_text, seal_free_text, CaseKey
from disputeflow.codec import ERASED_MARK, case_of, codec_for, is_encrypted
from disputeflow.db import audit
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.models import AuditEntry, CallerDataRead, CaseDataKey
from disputeflow.db.reference import seed_reference
from disputeflow.history import _payloads_in, fetch_case_history
from disputeflow.settings import DEFAULT_REFERENCE_FILE, get_settings
from disputeflow.temporal import SEARCH_ATTRIBUTES, data_converter
from tests.api.conftest import AUDITOR, SUPERVISOR, Stack, settings_for
from tests.conftest import installed_binary
from worker import build_worker

ERASE = {"reason": "data_subject_request", "reference": "DSR-2026-0099"}


def _payloads(runs) -> list:
    return [p for run in runs for event in run.events for p in _payloads_in(event) if is_encrypted(p)]


def _contains(payloads, text: str) -> bool:
    return any(text.encode() in p.data or json.dumps(text).strip('"').encode() in p.data for p in payloads)


async def test_erasing_a_case_makes_its_history_and_audit_text_unreadable(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(tmp_path, "unused", f"erase-{uuid.uuid4().hex[:6]}")
    converter = data_converter(settings)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=converter, dev_server_extra_args=["--headless"])
    try:
        settings = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
        engine = engine_for(settings.effective_database_url)
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        app = create_app(settings)
        tag = uuid.uuid4().hex[:6]
        erased_name, kept_name = "上官婉儿", "司马相如"
        erased_story, kept_story = f"隔壁装修噪音{tag}", f"房东不退押金{tag}"
        reason = f"来电人{erased_name}撤回，已和解{tag}"
        async with build_worker(env.client, settings, engine, task_queue=settings.temporal_task_queue):
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                    stack = Stack(env, settings, engine, http)
                    gone = await stack.open_case(caller={"name": erased_name, "phone": "13700001111"},
                                                 description=erased_story)
                    kept = await stack.open_case(caller={"name": kept_name, "phone": "13700002222"},
                                                 description=kept_story)
                    gone_id, kept_id = gone["case_id"], kept["case_id"]
                    withdrawn = await stack.act(gone_id, "withdraw", {"reason": reason}, SUPERVISOR)
                    assert withdrawn.status_code == 200, withdrawn.text
                    await stack.projected(gone_id, lambda r: r.closed_at is not None)

                    # Before: each case's payloads name their case and its data key, and decrypt
                    keyless = await Client.connect(settings.effective_temporal_address,
                                                   data_converter=pydantic_data_converter)
                    raw = await fetch_case_history(keyless, gone_id, decode=False)
                    gone_payloads = _payloads(raw)
                    assert gone_payloads and {case_of(p) for p in gone_payloads} == {gone_id}
                    with Session(engine) as session:
                        row = session.get(CaseDataKey, gone_id)
                        assert row is not None and row.wrapped_key is not None
                        assert row.key_id.encode() == gone_payloads[0].metadata["encryption-key-id"]
                    assert _contains(await codec_for(settings).decode(gone_payloads), erased_name)
                    # the audit entries hold the withdrawal's reason encrypted, and the check still agrees
                    with Session(engine) as session:
                        entries = audit.entries_for_case(session, gone_id)
                    assert entries and not any(reason in e.canonical or erased_name in e.canonical for e in entries)
                    assert any('"enc:' in e.canonical for e in entries)
                    check = await http.get(f"/cases/{gone_id}/audit/check", headers=stack.auth(AUDITOR))
                    assert check.status_code == 200 and check.json()["discrepancies"] == [], check.text

                    # Erase it
                    done = await http.post(f"/cases/{gone_id}/erase", json=ERASE, headers=stack.auth(SUPERVISOR))
                    assert done.status_code == 200 and done.json()["erased_now"] is True, done.text
                    with Session(engine) as session:
                        row = session.get(CaseDataKey, gone_id)
                        assert row.wrapped_key is None and row.destroyed_at is not None

                    # After: its raw history no longer decodes, in this process or a new one; every
                    # payload comes back as the "(erased)" marker, not an error
                    for codec in (converter.payload_codec, codec_for(settings)):
                        decoded = await codec.decode(gone_payloads)
                        assert all(ERASED_MARK in p.metadata and p.data == b'"(erased)"' for p in decoded)
                        assert not _contains(decoded, erased_name) and not _contains(decoded, erased_story)
                    # the other case still decodes, and still works
                    kept_payloads = _payloads(await fetch_case_history(keyless, kept_id, decode=False))
                    assert _contains(await codec_for(settings).decode(kept_payloads), kept_name)
                    moved = await stack.act(kept_id, "send_to_mediation")
                    assert moved.status_code == 200, moved.text

                    # The auditors' routes say "erased"; the codec endpoint answers the marker and logs the read
                    for route in ("timeline", "audit/check"):
                        answer = await http.get(f"/cases/{gone_id}/{route}", headers=stack.auth(AUDITOR))
                        assert answer.status_code == 410 and "erased" in answer.json()["detail"], answer.text
                    replay = await http.post(f"/cases/{gone_id}/replay", headers=stack.auth(AUDITOR))
                    assert replay.status_code == 410, replay.text
                    drill = await http.post(f"/cases/{gone_id}/drill", json={}, headers=stack.auth(SUPERVISOR))
                    assert drill.status_code == 409 and "erased" in drill.json()["detail"], drill.text
                    body = json_format.MessageToDict(Payloads(payloads=gone_payloads[:3] + kept_payloads[:2]))
                    answer = await http.post("/codec/decode", json=body, headers=stack.auth(AUDITOR))
                    assert answer.status_code == 200, answer.text
                    datas = [base64.b64decode(p.get("data", "")) for p in answer.json()["payloads"]]
                    assert datas[:3] == [b'"(erased)"'] * 3
                    assert any(kept_name.encode() in d for d in datas[3:])
                    with Session(engine) as session:
                        logged = {(r.case_id, r.kind, r.fields) for r in session.exec(
                            select(CallerDataRead).where(CallerDataRead.route == "POST /codec/decode"))}
                    assert logged == {(kept_id, "payloads", "2 payloads")}  # the erased case's: nothing read
                    answer = await http.post("/codec/decode", json=json_format.MessageToDict(
                        Payloads(payloads=kept_payloads[:3])), headers=stack.auth(SUPERVISOR))
                    assert answer.status_code == 200
                    log = await http.get("/audit/reads", params={"case_id": kept_id, "kind": "payloads"},
                                         headers=stack.auth(AUDITOR))
                    assert [(i["user_id"], i["fields"]) for i in log.json()["items"]] == [
                        (SUPERVISOR[0], ["3 payloads"]), (AUDITOR[0], ["2 payloads"])]

                    # The audit chain still verifies; the erased case's text in it is gone for good
                    with Session(engine) as session:
                        assert audit.verify_chain(session).ok
                        entries = audit.entries_for_case(session, gone_id)
                        store = CaseKeyStore(lambda: engine, [], ttl=0)
                        key = store.get(gone_id)
                        assert key is not None and key.destroyed
                        texts = json.dumps([audit.readable_payload(e, key) for e in entries], ensure_ascii=False)
                        assert reason not in texts and erased_name not in texts and "(erased)" in texts
                        assert session.exec(select(AuditEntry).where(AuditEntry.case_id == gone_id,
                                                                     AuditEntry.event_type == "case_erased")).first()

                    # The command line: replay says "erased" (not a divergence), the timeline refuses
                    for variable, value in {"TEMPORAL_ADDRESS": settings.effective_temporal_address,
                                            "DISPUTEFLOW_DATA_DIR": str(tmp_path),
                                            "DATABASE_URL": settings.effective_database_url}.items():
                        monkeypatch.setenv(variable, value)
                    get_settings.cache_clear()
                    try:
                        capsys.readouterr()
                        assert await asyncio.to_thread(cli.main, ["replay", gone_id]) == 0
                        out = capsys.readouterr().out
                        assert "erased" in out and "0 diverged" in out and "DIVERGED" not in out, out
                        assert await asyncio.to_thread(cli.main, ["timeline", gone_id]) == 2
                        assert "was erased" in capsys.readouterr().out
                        assert await asyncio.to_thread(cli.main, ["replay", kept_id]) == 0
                        assert "1 replayed, 0 diverged" in capsys.readouterr().out
                    finally:
                        get_settings.cache_clear()
    finally:
        await env.shutdown()


def test_audit_text_is_sealed_deterministically_and_opens_only_with_its_key() -> None:
    """A retried projection writes the same entry (the chain compares texts); the text names its key,
    opens with it, and reads `(erased)` once the key is destroyed."""
    from cryptography.hazmat.primitives.ciphers.aead import AESGCM

    secret = bytes(range(32))
    key = CaseKey("C1", "dk-1", AESGCM(secret), secret=secret)
    event = {"type": "withdrawn", "seq": 4, "data": {"reason": "来电人张三撤回", "by": "sup-1"}}
    sealed = seal_free_text(event, key, 4)
    assert sealed == seal_free_text(event, key, 4)  # deterministic: a retry is the same entry
    assert sealed["type"] == "withdrawn" and sealed["data"]["by"] == "sup-1"  # tokens stay readable
    assert sealed["data"]["reason"].startswith("enc:dk-1:") and "张三" not in json.dumps(sealed, ensure_ascii=False)
    assert seal_free_text(event, key, 5)["data"]["reason"] != sealed["data"]["reason"]  # bound to its event
    assert open_free_text(sealed, key, 4) == event
    tricky = {"code": "enc:dk-1:abc"}  # a token that looks sealed is sealed too, so it reads back as itself
    assert open_free_text(seal_free_text(tricky, key, 4), key, 4) == tricky
    destroyed = CaseKey("C1", "dk-1", None)
    assert open_free_text(sealed, destroyed, 4)["data"]["reason"] == "(erased)"
    assert open_free_text(sealed, None, 4)["data"]["reason"] == "(erased)"


# -- The key store, on SQLite and PostgreSQL --------------------------------------------------------


def test_a_case_key_is_made_once_wrapped_and_destroyed_for_good(engine) -> None:
    from concurrent.futures import ThreadPoolExecutor
    from datetime import UTC, datetime

    from disputeflow.case_keys import CaseKeyError, destroy

    old, new = ("m1", bytes([1]) * 32), ("m2", bytes([2]) * 32)
    stores = [CaseKeyStore(lambda: engine, [old], ttl=60) for _ in range(4)]
    # four processes encrypting the case's first payloads at once: one key, which all of them use
    with ThreadPoolExecutor(4) as pool:
        keys = list(pool.map(lambda store: store.get("C-race", create=True), stores))
    assert len({k.key_id for k in keys}) == 1 and len({k.secret for k in keys}) == 1
    with Session(engine) as session:
        row = session.get(CaseDataKey, "C-race")
        assert row.master_key_id == "m1" and keys[0].secret not in row.wrapped_key  # stored wrapped only
    # after a rotation the old master key still unwraps it; without it, it is an error naming it
    assert CaseKeyStore(lambda: engine, [old, new]).get("C-race").secret == keys[0].secret
    assert CaseKeyStore(lambda: engine, [old, new]).get("C-new", create=True) is not None
    with Session(engine) as session:
        assert session.get(CaseDataKey, "C-new").master_key_id == "m2"  # new keys under the newest
    with pytest.raises(CaseKeyError, match="'m1'"):
        CaseKeyStore(lambda: engine, [new]).get("C-race")
    # destroyed: no key material left in the row, every store that reads it again sees it destroyed
    with Session(engine) as session:
        assert destroy(session, "C-race", now=datetime.now(UTC)) is True
        assert destroy(session, "C-never", now=datetime.now(UTC)) is False  # no key yet: a destroyed row
        session.commit()
    with Session(engine) as session:
        row = session.get(CaseDataKey, "C-race")
        assert row.wrapped_key is None and row.destroyed_at is not None
    assert stores[0].get("C-race").cipher is not None  # still in that process's memory (within its ttl)...
    stores[0].forget(["C-race"])
    assert stores[0].get("C-race").destroyed  # ...until it reads again (or the eraser forgets it)
    assert stores[1].get("C-never", create=True).destroyed  # an erased case never gets a key


def test_a_stale_key_serves_while_the_database_is_away(tmp_path: Path) -> None:
    """A case's deadlines must not wait for the database: a key read before still decrypts."""
    from disputeflow.case_keys import CaseKeyUnavailable
    from disputeflow.db.engine import create_schema, make_engine

    good = make_engine(f"sqlite:///{(tmp_path / 'db.sqlite').as_posix()}")
    create_schema(good)
    broken = make_engine(f"sqlite:///{(tmp_path / 'missing' / 'db.sqlite').as_posix()}")
    current = [good]
    now = [0.0]
    store = CaseKeyStore(lambda: current[0], [("m1", bytes(32))], ttl=60, clock=lambda: now[0])
    key = store.get("C1", create=True)
    current[0], now[0] = broken, 3600.0  # the database is gone, the key is an hour old
    assert store.get("C1") is key
    with pytest.raises(CaseKeyUnavailable):
        store.get("C2")  # never read: nothing to serve
    good.dispose()
    broken.dispose()


async def test_a_case_whose_key_cannot_be_had_is_encrypted_with_the_shared_key(tmp_path: Path) -> None:
    """The database away at a case's first payload: the shared key encrypts (deadlines do not wait),
    and the payload still decodes; with the database back, the case gets its own key."""
    from temporalio.converter import WorkflowSerializationContext

    from disputeflow.codec import EncryptionCodec, PayloadKey
    from disputeflow.db.engine import create_schema, make_engine

    good = make_engine(f"sqlite:///{(tmp_path / 'db.sqlite').as_posix()}")
    create_schema(good)
    broken = make_engine(f"sqlite:///{(tmp_path / 'missing' / 'db.sqlite').as_posix()}")
    current = [broken]
    keys = [PayloadKey("m1", bytes(32))]
    codec = EncryptionCodec(keys, case_keys=CaseKeyStore(lambda: current[0], [("m1", bytes(32))])).with_context(
        WorkflowSerializationContext(namespace="default", workflow_id="case-C9"))
    plain = pydantic_data_converter.payload_converter.to_payloads([{"story": "邻居噪音"}])
    [shared] = await codec.encode(plain)
    assert case_of(shared) is None and shared.metadata["encryption-key-id"] == b"m1"
    assert await codec.decode([shared]) == plain
    current[0] = good
    [own] = await codec.encode(plain)
    assert case_of(own) == "C9" and await codec.decode([own]) == plain
    good.dispose()
    broken.dispose()


def test_the_chain_holds_free_text_encrypted_and_verifies_after_the_key_is_gone(engine, caplog) -> None:
    """On SQLite and PostgreSQL: the projection writes the audit entries' free text encrypted with the
    case's key; a retry writes the same entries; the audit check decrypts; after the key is destroyed
    the chain verifies and the text reads `(erased)`."""
    from datetime import UTC, datetime

    from disputeflow.case_keys import destroy
    from disputeflow.db.cases import apply_projection
    from tests.test_projection import NOW, opened_case, projection_of

    state, _ = opened_case()
    projection = projection_of(state)
    store = CaseKeyStore(lambda: engine, [("m1", bytes([7]) * 32)])
    key = store.get(state.case_id, create=True)
    with write_session(engine) as session:
        assert apply_projection(session, projection, now=NOW, key=key) == len(state.timeline)
    with write_session(engine) as session:  # a retried activity: the same text, so nothing new, no conflict
        assert apply_projection(session, projection, now=NOW, key=key) == 0
    assert "different content" not in caplog.text
    source = [e.model_dump(mode="json") for e in state.timeline]
    title = source[1]["data"]["title"]
    with Session(engine) as session:
        entries = audit.entries_for_case(session, state.case_id)
        assert len(entries) == len(source) and not any(title in e.canonical for e in entries)
        assert '"enc:' + key.key_id in entries[1].canonical
        assert audit.verify_chain(session).ok
        assert audit.compare_with_source(state.case_id, entries, source, key=key).ok
        assert not audit.compare_with_source(state.case_id, entries, source, key=None).ok  # ciphertext differs
        assert audit.readable_payload(entries[1], key)["data"]["title"] == title
        destroy(session, state.case_id, now=datetime.now(UTC))
        session.commit()
    store.forget([state.case_id])
    gone = store.get(state.case_id)
    with Session(engine) as session:
        entries = audit.entries_for_case(session, state.case_id)
        assert audit.verify_chain(session).ok
        assert audit.readable_payload(entries[1], gone)["data"]["title"] == "(erased)"
        assert audit.readable_payload(entries[0], gone)["type"] == "case_registered"  # tokens stay readable


def test_a_block_of_case_numbers_comes_with_its_cases_keys(tmp_path) -> None:
    """Intake's keyless case numbers are reserved ten at a time; their data keys are made in the same
    go, one transaction, and kept in memory, so the cases' first payloads write nothing more."""
    from disputeflow.db.intake import CaseNumbers

    engine = engine_for(f"sqlite:///{tmp_path / 'keys.db'}")
    store = CaseKeyStore(lambda: engine, [("m1", bytes([3]) * 32)], ttl=60)
    numbers = CaseNumbers(engine, block=10, on_block=store.prepare)
    now = datetime(2026, 12, 2, 9, 0, tzinfo=UTC)
    first = numbers.next(region_code="370102", now=now)
    with Session(engine) as session:
        rows = list(session.exec(select(CaseDataKey)))
    assert first == "370102-20261202-0001" and len(rows) == 10
    assert all(store.cached(r.case_id) is not None for r in rows)
    # the one the database holds is the one used: a key made before stays the case's key
    assert store.cached(first).key_id == next(r.key_id for r in rows if r.case_id == first)
    again = CaseKeyStore(lambda: engine, [("m1", bytes([3]) * 32)], ttl=60)
    again.prepare([first, "370102-20261202-0042"])
    assert again.get(first).secret == store.get(first).secret
    for _ in range(9):
        numbers.next(region_code="370102", now=now)
    with Session(engine) as session:
        assert len(list(session.exec(select(CaseDataKey)))) == 11  # no key made per case, the next block's not yet
