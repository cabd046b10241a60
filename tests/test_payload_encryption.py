"""Temporal never holds the caller's data in clear: every payload is encrypted (AES-256-GCM).

A whole case runs on a real dev server, through the API and a worker, as `make run` runs them; then
the history, fetched with a client that has no keys, is searched byte by byte for the caller's name,
phone, identity number and story. The auditors' routes (timeline, history, replay) still read it.
"""

from __future__ import annotations

import asyncio
import base64
import json
import stat
import uuid
from pathlib import Path

import httpx
from sqlalchemy import text
import pytest
from temporalio.api.common.v1 import Payload
from temporalio.client import Client, WorkflowHistory
from temporalio.contrib.pydantic import pydantic_data_converter
from temporalio.testing import WorkflowEnvironment

from api.app import create_app
from disputeflow import cli
from disputeflow.codec import (
    ENCODING,
    EncryptionCodec,
    PayloadDecryptionError,
    PayloadKey,
    PayloadKeyError,
    add_key,
    codec_for,
    load_keys,
)
from disputeflow.contracts import workflow_id_for
from disputeflow.db.engine import engine_for, write_session
from disputeflow.db.reference import seed_reference
from disputeflow.history import (
    HistoryError,
    decode_history,
    fetch_case_history,
    load_history_files,
    replay_histories,
    timeline,
)
from disputeflow.settings import DEFAULT_REFERENCE_FILE, Settings, get_settings
from disputeflow.temporal import SEARCH_ATTRIBUTES, data_converter
from tests.api.conftest import AUDITOR, OPERATOR, Stack, intake_body, settings_for
from tests.conftest import installed_binary
from worker import build_worker

HISTORIES = Path(__file__).parent / "histories"
NAME, PHONE, ID_NUMBER = "欧阳娜娜", "13912345678", "11010519491231002X"


def _plain(text: str) -> Payload:
    return pydantic_data_converter.payload_converter.to_payloads([{"story": text}])[0]


def _key(key_id: str, fill: int) -> PayloadKey:
    return PayloadKey(key_id, bytes([fill]) * 32)


# -- The codec ------------------------------------------------------------------------------------


def test_a_payload_is_encrypted_with_the_newest_key_and_names_it() -> None:
    codec = EncryptionCodec([_key("k1", 1), _key("k2", 2)])
    [encrypted] = codec.encode_sync([_plain(NAME)])
    assert encrypted.metadata["encoding"] == ENCODING and encrypted.metadata["encryption-key-id"] == b"k2"
    assert NAME.encode() not in encrypted.SerializeToString()
    assert codec.decode_sync([encrypted]) == [_plain(NAME)]
    [again] = codec.encode_sync([_plain(NAME)])
    assert again.data != encrypted.data  # a fresh nonce each time


def test_after_a_rotation_old_payloads_still_decode() -> None:
    [old] = EncryptionCodec([_key("k1", 1)]).encode_sync([_plain(NAME)])
    rotated = EncryptionCodec([_key("k1", 1), _key("k2", 2)])
    assert rotated.decode_sync([old]) == [_plain(NAME)]
    assert rotated.encode_sync([_plain(NAME)])[0].metadata["encryption-key-id"] == b"k2"
    # and once the old key is dropped, the old payload says which key it needs
    with pytest.raises(PayloadDecryptionError, match=r"key 'k1', which is not among .*known: k2"):
        EncryptionCodec([_key("k2", 2)]).decode_sync([old])


def test_a_wrong_key_or_an_altered_payload_is_an_error_not_garbage() -> None:
    [encrypted] = EncryptionCodec([_key("k1", 1)]).encode_sync([_plain(NAME)])
    with pytest.raises(PayloadDecryptionError, match="key 'k1' does not decrypt: the configured key of that id is not"):
        EncryptionCodec([_key("k1", 9)]).decode_sync([encrypted])
    altered = Payload()
    altered.CopyFrom(encrypted)
    altered.data = encrypted.data[:-1] + bytes([encrypted.data[-1] ^ 1])
    with pytest.raises(PayloadDecryptionError, match="or the payload was altered"):
        EncryptionCodec([_key("k1", 1)]).decode_sync([altered])
    # the key id is bound to the ciphertext: relabelled with another known key's id, it fails too
    relabelled = Payload()
    relabelled.CopyFrom(encrypted)
    relabelled.metadata["encryption-key-id"] = b"k2"
    with pytest.raises(PayloadDecryptionError):
        EncryptionCodec([_key("k1", 1), _key("k2", 1)]).decode_sync([relabelled])


def test_payloads_recorded_before_encryption_pass_through() -> None:
    plain = _plain(NAME)
    assert EncryptionCodec([_key("k1", 1)]).decode_sync([plain]) == [plain]
    assert EncryptionCodec([]).decode_sync([plain]) == [plain]


def test_keys_must_be_aes_256_with_clean_unique_ids() -> None:
    with pytest.raises(PayloadKeyError, match="32 bytes, got 16"):
        PayloadKey("k1", b"x" * 16)
    with pytest.raises(PayloadKeyError, match="key id"):
        PayloadKey("k 1", b"x" * 32)
    with pytest.raises(PayloadKeyError, match="unique"):
        EncryptionCodec([_key("k1", 1), _key("k1", 2)])
    assert "\\x01" not in repr(_key("k1", 1)) and "k1" in repr(_key("k1", 1))


def test_keys_from_settings_the_newest_last(tmp_path: Path) -> None:
    k1, k2 = base64.b64encode(b"\x01" * 32).decode(), base64.b64encode(b"\x02" * 32).decode()
    settings = Settings(_env_file=None, data_dir=tmp_path, payload_keys=f"old:{k1}, new:{k2}")
    assert [k.id for k in load_keys(settings)] == ["old", "new"]
    assert not (tmp_path / "keys").exists()  # configured keys: no file generated
    for bad, why in ((f"old:{k1[:-4]}", "32 bytes"), ("old:***", "not base64"), ("justakey", "id:base64key")):
        with pytest.raises(PayloadKeyError, match=why):
            load_keys(Settings(_env_file=None, data_dir=tmp_path, payload_keys=bad))


def test_the_dev_key_file_is_generated_once_private_and_rotates(tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path / "var")
    first = load_keys(settings)
    folder, key_file = tmp_path / "var" / "keys", tmp_path / "var" / "keys" / "payload-keys.json"
    assert stat.S_IMODE(folder.stat().st_mode) == 0o700
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert load_keys(settings) == first  # kept, not regenerated
    [old] = codec_for(settings).encode_sync([_plain(NAME)])
    added = add_key(key_file)
    assert stat.S_IMODE(key_file.stat().st_mode) == 0o600
    assert [k.id for k in load_keys(settings)] == [first[0].id, added.id]
    codec = codec_for(settings)
    assert codec.decode_sync([old]) == [_plain(NAME)]
    assert codec.encode_sync([_plain(NAME)])[0].metadata["encryption-key-id"] == added.id.encode()


def test_the_payload_key_command_adds_a_key(monkeypatch: pytest.MonkeyPatch, tmp_path: Path, capsys) -> None:
    monkeypatch.setenv("DISPUTEFLOW_DATA_DIR", str(tmp_path))
    get_settings.cache_clear()
    try:
        assert cli.main(["payload-key", "add"]) == 0
        assert cli.main(["payload-key", "add"]) == 0
        keys = load_keys(get_settings())
    finally:
        get_settings.cache_clear()
    out = capsys.readouterr().out
    assert len(keys) == 3 and keys[-1].id in out  # the generated one, then two added
    assert base64.b64encode(keys[-1].secret).decode() not in out  # the secret stays in the file


async def test_committed_histories_from_before_encryption_still_replay_with_keys(tmp_path: Path) -> None:
    converter = data_converter(Settings(_env_file=None, data_dir=tmp_path))
    histories = list(load_history_files(HISTORIES).values())[:3]
    report = await replay_histories(histories, data_converter=converter)
    assert report.ok and len(report.results) == 3, report.diverged


# -- A whole case on a real dev server ------------------------------------------------------------


def _payload_bytes(history: WorkflowHistory) -> list[bytes]:
    """Every event's serialized bytes, and every payload's data and metadata: where a name could hide."""
    found = [event.SerializeToString() for event in history.events]
    found.append(history.to_json().encode())
    return found


def _forms(text: str) -> list[bytes]:
    """The ways a value may sit in bytes: UTF-8, JSON-escaped (\\uXXXX), UTF-16."""
    escaped = json.dumps(text).strip('"').encode()
    return [text.encode(), escaped, text.encode("utf-16-le")]


async def test_a_whole_case_leaves_nothing_personal_in_temporal(tmp_path: Path, monkeypatch: pytest.MonkeyPatch,
                                                               capsys: pytest.CaptureFixture[str]) -> None:
    settings = settings_for(tmp_path, "unused", f"enc-{uuid.uuid4().hex[:6]}")
    converter = data_converter(settings)
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=converter, dev_server_extra_args=["--headless"])
    try:
        settings = settings.model_copy(update={"temporal_address": env.client.service_client.config.target_host})
        engine = engine_for(settings.effective_database_url)
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        story = f"包工头拖欠工资{uuid.uuid4().hex[:6]}，电话打不通。"
        body = intake_body(caller={"name": NAME, "phone": PHONE, "id_number": ID_NUMBER}, description=story,
                           category="legal_aid")  # the identity card number only comes with a legal-aid application
        app = create_app(settings)
        async with build_worker(env.client, settings, engine, task_queue=settings.temporal_task_queue):
            async with app.router.lifespan_context(app):
                async with httpx.AsyncClient(transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
                    stack = Stack(env, settings, engine, http)
                    response = await http.post("/cases", json=body, headers=stack.auth(OPERATOR))
                    assert response.status_code == 201, response.text
                    case_id = response.json()["case_id"]
                    assert (await stack.act(case_id, "send_to_mediation")).status_code == 200
                    await stack.projected(case_id, lambda record: record.stage == "mediation")

                    # Temporal, asked without the keys, holds ciphertext only
                    keyless = await Client.connect(settings.effective_temporal_address,
                                                   data_converter=pydantic_data_converter)
                    runs = await fetch_case_history(keyless, case_id)
                    assert runs and len(runs[0].events) > 10
                    blobs = [blob for run in runs for blob in _payload_bytes(run)]
                    for secret in (NAME, PHONE, ID_NUMBER, story, "8613912345678"):
                        for form in _forms(secret):
                            assert not any(form in blob for blob in blobs), f"{secret!r} in clear in the history"
                    description = await keyless.get_workflow_handle(workflow_id_for(case_id)).describe()
                    attributes = repr(description.raw_description.workflow_execution_info.search_attributes)
                    attributes += repr(description.raw_description.workflow_execution_info.memo)
                    assert NAME not in attributes and PHONE not in attributes
                    encrypted = [p for e in runs[0].events[:1]
                                 for p in e.workflow_execution_started_event_attributes.input.payloads]
                    assert encrypted and all(p.metadata["encoding"] == ENCODING for p in encrypted)
                    with pytest.raises(HistoryError, match="encrypted"):
                        timeline(runs)  # read without the keys: refused, not misread

                    # with the keys, everything the auditors use still works
                    decoded = await decode_history(runs[0], converter.payload_codec)
                    started = decoded.events[0].workflow_execution_started_event_attributes
                    assert NAME.encode() in started.input.payloads[0].data
                    auditor = stack.auth(AUDITOR)
                    entries = (await http.get(f"/cases/{case_id}/timeline", headers=auditor)).json()["entries"]
                    kinds = [entry["kind"] for entry in entries]
                    assert kinds[0] == "case_opened" and "action" in kinds and "case_event" in kinds
                    assert any("sent the case to mediation" in entry["summary"] for entry in entries)
                    exported = await http.get(f"/cases/{case_id}/history", headers=auditor)
                    assert exported.status_code == 200 and NAME.encode() not in exported.content
                    verdict = (await http.post(f"/cases/{case_id}/replay", headers=auditor)).json()
                    assert verdict["ok"] is True, verdict
                    check = await http.get(f"/cases/{case_id}/audit/check", headers=auditor)
                    assert check.status_code == 200 and check.json()["discrepancies"] == [], check.text
                    file = WorkflowHistory.from_json(workflow_id_for(case_id), exported.text)
                    assert (await replay_histories([file], data_converter=converter)).ok
                    # a replayer without the keys cannot, and says why
                    keyless_report = await replay_histories([file])
                    assert not keyless_report.ok
                    # (the case's payloads are encrypted with its data key, which lives in the database)
                    assert "without the payload keys and the database" in (keyless_report.results[0].reason or "")

                    # the auditors' commands, with the same settings (and so the same keys) as the stack
                    for variable, value in {"TEMPORAL_ADDRESS": settings.effective_temporal_address,
                                            "DISPUTEFLOW_DATA_DIR": str(tmp_path),
                                            "DATABASE_URL": settings.effective_database_url}.items():
                        monkeypatch.setenv(variable, value)
                    get_settings.cache_clear()
                    try:
                        capsys.readouterr()
                        assert await asyncio.to_thread(cli.main, ["timeline", case_id]) == 0
                        assert "sent the case to mediation" in capsys.readouterr().out
                        assert await asyncio.to_thread(cli.main, ["replay", case_id]) == 0
                        assert "1 replayed, 0 diverged" in capsys.readouterr().out
                        export = tmp_path / "export.json"
                        assert await asyncio.to_thread(cli.main, ["history", case_id, "--out", str(export)]) == 0
                        assert NAME.encode() not in export.read_bytes() and PHONE.encode() not in export.read_bytes()
                        assert await asyncio.to_thread(cli.main, ["replay", "--dir", str(tmp_path)]) == 0
                        assert await asyncio.to_thread(cli.main, ["verify-audit", "--case", case_id]) == 0
                    finally:
                        get_settings.cache_clear()
    finally:
        await env.shutdown()


# -- Failures and database errors -----------------------------------------------------------------


async def test_a_failures_text_is_encrypted_and_read_back_with_the_keys(tmp_path: Path) -> None:
    from temporalio.api.enums.v1 import EventType
    from temporalio.api.failure.v1 import Failure
    from temporalio.api.history.v1 import HistoryEvent
    from temporalio.exceptions import ApplicationError

    converter = data_converter(Settings(_env_file=None, data_dir=tmp_path))
    failure = Failure()
    await converter.encode_failure(ApplicationError(f"no mediator for {NAME} ({PHONE})"), failure)
    assert not any(form in failure.SerializeToString() for secret in (NAME, PHONE) for form in _forms(secret))
    event = HistoryEvent(event_id=7, event_type=EventType.EVENT_TYPE_ACTIVITY_TASK_FAILED)
    event.activity_task_failed_event_attributes.failure.CopyFrom(failure)
    decoded = await decode_history(WorkflowHistory("case-x", [event]), converter.payload_codec)
    assert decoded.events[0].activity_task_failed_event_attributes.failure.message == f"no mediator for {NAME} ({PHONE})"
    assert event.activity_task_failed_event_attributes.failure.message != decoded.events[0].activity_task_failed_event_attributes.failure.message  # the original is untouched


def test_a_database_error_does_not_quote_the_row(tmp_path: Path) -> None:
    from sqlalchemy.exc import IntegrityError

    from disputeflow.db.engine import create_schema, make_engine

    engine = make_engine(f"sqlite:///{(tmp_path / 'db.sqlite').as_posix()}")
    try:
        create_schema(engine)
        insert = text("INSERT INTO intake_requests (owner, idempotency_key, case_id, fingerprint, created_at) "
                      "VALUES ('op-1', :key, 'c', 'f', '2026-12-02 00:00:00')")
        with engine.begin() as conn:
            conn.execute(insert, {"key": NAME})
        with pytest.raises(IntegrityError) as error:
            with engine.begin() as conn:
                conn.execute(insert, {"key": NAME})
        assert NAME not in str(error.value) and "hidden" in str(error.value)
    finally:
        engine.dispose()


async def test_a_failing_projection_shows_temporal_no_caller_data(tmp_path: Path) -> None:
    """The read model refuses new cases (a trigger): the new case's first projection fails and
    retries. Its error (the INSERT with the row it tried to write) is what Temporal shows as the
    pending activity's last failure, to anyone who can describe the workflow: it must quote nothing
    of the caller."""
    from datetime import UTC, datetime

    from disputeflow.pinning import PolicyPins
    from disputeflow.settings import DEFAULT_POLICY_FILE
    from tests.workflows.conftest import OPERATOR as OPERATOR_ACTOR
    from tests.workflows.conftest import make_intake
    from workflows.case import CaseWorkflowV2

    settings = settings_for(tmp_path, "unused", f"fail-{uuid.uuid4().hex[:6]}")
    env = await WorkflowEnvironment.start_local(
        dev_server_existing_path=installed_binary("temporal"), search_attributes=SEARCH_ATTRIBUTES,
        data_converter=data_converter(settings), dev_server_extra_args=["--headless"])
    engine = engine_for(settings.effective_database_url)
    try:
        with write_session(engine) as session:
            seed_reference(session, DEFAULT_REFERENCE_FILE)
        with engine.begin() as conn:
            conn.execute(text("CREATE TRIGGER refuse_cases BEFORE INSERT ON cases "
                              "BEGIN SELECT RAISE(ABORT, 'the read model refuses'); END"))
        case_id = f"T{uuid.uuid4().hex[:10]}"
        story = f"邻居占用通道{uuid.uuid4().hex[:6]}"
        intake = make_intake(caller={"name": NAME, "phone": PHONE, "id_number": ID_NUMBER}, description=story)
        start = PolicyPins(DEFAULT_POLICY_FILE).start(case_id, intake, registered_at=datetime.now(UTC),
                                                       registered_by=OPERATOR_ACTOR)
        async with build_worker(env.client, settings, engine, task_queue=settings.temporal_task_queue):
            await env.client.start_workflow(CaseWorkflowV2.run, start, id=workflow_id_for(case_id),
                                            task_queue=settings.temporal_task_queue)
            keyless = await Client.connect(env.client.service_client.config.target_host,
                                           data_converter=pydantic_data_converter)
            handle = keyless.get_workflow_handle(workflow_id_for(case_id))
            failed = None
            for _ in range(100):  # 10 s at most: the first attempt fails at once
                pending = (await handle.describe()).raw_description.pending_activities
                failed = next((a for a in pending if a.HasField("last_failure")), None)
                if failed is not None:
                    break
                await asyncio.sleep(0.1)
            assert failed is not None, "the projection did not fail"
            shown = (await handle.describe()).raw_description.SerializeToString()
            for secret in (NAME, PHONE, ID_NUMBER, story, "8613912345678"):
                assert not any(form in shown for form in _forms(secret)), f"{secret!r} in the pending failure"
            assert failed.last_failure.message == "Encoded failure"
            error = await data_converter(settings).decode_failure(failed.last_failure)  # with the keys: readable
            assert "the read model refuses" in str(error) and "parameters hidden" in str(error)
            with engine.begin() as conn:  # the read model is back: the case is projected after all
                conn.execute(text("DROP TRIGGER refuse_cases"))
            for _ in range(200):
                with engine.connect() as conn:
                    if conn.execute(text("SELECT 1 FROM cases WHERE case_id = :c"), {"c": case_id}).first():
                        break
                await asyncio.sleep(0.1)
            else:
                raise AssertionError("the case was never projected")
            decoded = await fetch_case_history(env.client, case_id)
            assert any(e.kind == "case_opened" for e in timeline(decoded))
            await env.client.get_workflow_handle(workflow_id_for(case_id)).terminate("test finished")
    finally:
        engine.dispose()
        await env.shutdown()
