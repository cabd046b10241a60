"""The webhook sender: a real HTTP receiver on localhost, the outbox on SQLite and PostgreSQL."""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import threading
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import datetime, timedelta, timezone
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest
from sqlalchemy import inspect, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from disputeflow.db import migrate
from disputeflow.db.engine import create_schema, is_sqlite, make_engine, write_session
from disputeflow.db.models import OutboxMessage
from disputeflow.db.notifications import next_unsent, parked, undelivered
from disputeflow.notify import DeliveryFailed, WebhookSender, run_sender, webhook_body
from disputeflow.settings import Settings
from tests.conftest import free_port
from worker import notification_sender

SECRET = "whsec_" + base64.b64encode(b"webhook-test-key-of-32-bytes-xxx").decode()
T0 = datetime(2026, 11, 30, 9, tzinfo=timezone.utc)


@dataclass
class Receiver:
    """A webhook endpoint: records what it is sent; answers `status` (200 unless told otherwise)."""

    url: str
    status: int = 200
    delay: float = 0.0
    received: list[tuple[dict, dict]] = field(default_factory=list)  # (headers, body)
    refused: int = 0
    before_answer: Callable[[], None] | None = None
    status_for: dict[str, int] = field(default_factory=dict)  # by idempotency key, over `status`
    lock: threading.Lock = field(default_factory=threading.Lock)

    def keys(self) -> list[str]:
        with self.lock:
            return [headers["idempotency-key"] for headers, _ in self.received]


@pytest.fixture
def receiver() -> Iterator[Receiver]:
    port = free_port()
    box = Receiver(url=f"http://127.0.0.1:{port}/hook")

    class Handler(BaseHTTPRequestHandler):
        def do_POST(self) -> None:  # noqa: N802 - the http.server API
            body = self.rfile.read(int(self.headers["Content-Length"]))
            if box.delay:
                threading.Event().wait(box.delay)
            status = box.status_for.get(self.headers["Idempotency-Key"], box.status)
            if box.before_answer is not None:
                box.before_answer()
            with box.lock:
                if status < 300:
                    box.received.append(({k.lower(): v for k, v in self.headers.items()}, json.loads(body)))
                else:
                    box.refused += 1
            self.send_response(status)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def log_message(self, *args: object) -> None:
            pass

    server = ThreadingHTTPServer(("127.0.0.1", port), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield box
    finally:
        server.shutdown()
        server.server_close()


async def until(condition, seconds: float = 15) -> None:
    """Poll for what a background sender does (it polls the outbox every second)."""
    for _ in range(int(seconds / 0.05)):
        if condition():
            return
        await asyncio.sleep(0.05)
    raise AssertionError("the sender did not get there in time")


def add_messages(engine: Engine, count: int, start: int = 0) -> list[str]:
    keys = []
    with write_session(engine) as session:
        for i in range(start, start + count):
            key = f"370102-20261130-{i:04d}:3:deadline_breached"
            keys.append(key)
            session.add(OutboxMessage(
                dedupe_key=key, case_id=f"370102-20261130-{i:04d}", kind="deadline_breached",
                recipient_role="supervisor", region_code="370102",
                payload={"event_seq": 3, "clock": "调解期限", "due_at": T0.isoformat()},
                created_at=T0 + timedelta(seconds=i),
            ))
    return keys


def sent_at(engine: Engine) -> dict[str, datetime | None]:
    with Session(engine) as session:
        return {m.dedupe_key: m.sent_at for m in session.exec(select(OutboxMessage))}


def test_delivers_in_order_signed_and_only_once(engine: Engine, receiver: Receiver) -> None:
    keys = add_messages(engine, 3)
    sender = WebhookSender(engine, receiver.url, secret=SECRET, api_url="https://hotline.example/api",
                           clock=lambda: 1_764_000_000.7)
    try:
        assert sender.deliver_all() == 3
        assert receiver.keys() == keys
        headers, body = receiver.received[0]
        assert body["key"] == keys[0] and body["kind"] == "deadline_breached" and body["event_seq"] == 3
        assert body["recipient_role"] == "supervisor"
        assert "payload" not in body  # ids and links only: no free text leaves
        case = keys[0].split(":")[0]
        assert body["links"] == {"case": f"https://hotline.example/api/cases/{case}",
                                 "notifications": f"https://hotline.example/api/me/notifications?case_id={case}"}
        with Session(engine) as session:
            first = session.exec(select(OutboxMessage).where(OutboxMessage.dedupe_key == keys[0])).one()
        raw = webhook_body(first, "https://hotline.example/api")
        assert json.loads(raw) == body
        # Standard Webhooks: v1,base64(HMAC-SHA256(key, "{id}.{timestamp}.{body}")), key from whsec_<base64>
        assert (headers["webhook-id"], headers["webhook-timestamp"]) == (keys[0], "1764000000")
        key = base64.b64decode(SECRET.removeprefix("whsec_"))
        mac = hmac.new(key, f"{keys[0]}.1764000000.".encode() + raw, hashlib.sha256).digest()
        assert headers["webhook-signature"] == "v1," + base64.b64encode(mac).decode()
        assert "x-disputeflow-signature" not in headers
        assert all(at is not None for at in sent_at(engine).values())
        assert sender.deliver_all() == 0  # nothing sent twice
        assert len(receiver.received) == 3
    finally:
        sender.close()


def test_a_refusing_webhook_loses_nothing_and_keeps_the_order(engine: Engine, receiver: Receiver) -> None:
    keys = add_messages(engine, 2)
    sender = WebhookSender(engine, receiver.url)
    try:
        receiver.status = 503
        with pytest.raises(DeliveryFailed, match="HTTP 503"):
            sender.deliver_all()
        assert set(sent_at(engine).values()) == {None}
        receiver.status = 200
        assert sender.deliver_all() == 2
        assert receiver.keys() == keys
        assert "webhook-signature" not in receiver.received[0][0]  # no secret, no signature
    finally:
        sender.close()


def test_an_unreachable_webhook_is_a_delivery_failure(sqlite_engine: Engine) -> None:
    add_messages(sqlite_engine, 1)
    sender = WebhookSender(sqlite_engine, f"http://127.0.0.1:{free_port()}/hook", timeout=1)
    try:
        with pytest.raises(DeliveryFailed, match="ConnectError"):
            sender.deliver_all()
        assert set(sent_at(sqlite_engine).values()) == {None}
    finally:
        sender.close()


def test_concurrent_senders_send_each_notification_once(engine: Engine, database_url: str,
                                                        receiver: Receiver) -> None:
    """Several workers, each with its own engine (SQLite: its own connections to the same file):
    PostgreSQL locks each row while it is sent, SQLite lets one sender at a time at the file."""
    engines = [engine, make_engine(database_url), make_engine(database_url)]
    keys = add_messages(engine, 24)
    receiver.delay = 0.01  # each delivery takes a while, so the senders overlap
    senders = [WebhookSender(engine, receiver.url) for engine in engines]
    barrier = threading.Barrier(len(senders))

    def rounds(sender: WebhookSender) -> int:  # as run_sender does: again until none is left
        barrier.wait(timeout=30)
        sent = 0
        while any(at is None for at in sent_at(sender.engine).values()):
            sent += sender.deliver_all()
        return sent

    try:
        with ThreadPoolExecutor(len(senders)) as pool:
            counts = list(pool.map(rounds, senders))
    finally:
        for s in senders:
            s.close()
        for other in engines[1:]:
            other.dispose()
    assert sum(counts) == 24 and sorted(receiver.keys()) == sorted(keys)
    assert len(set(receiver.keys())) == 24


async def test_the_worker_delivers_what_arrives_while_it_runs(tmp_path: Path, sqlite_engine: Engine,
                                                              receiver: Receiver) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, notify_webhook_url=receiver.url,
                        notify_webhook_secret=SECRET)
    stop = asyncio.Event()
    async with notification_sender(settings, sqlite_engine, stop):
        receiver.status = 500  # refused at first: the sender backs off and tries again
        keys = add_messages(sqlite_engine, 2)
        await until(lambda: receiver.refused >= 1)
        assert receiver.keys() == []
        receiver.status = 200
        await until(lambda: len(receiver.keys()) == 2)
        assert receiver.keys() == keys
    assert stop.is_set()  # the context stopped the sender on the way out


async def test_without_a_webhook_nothing_runs(tmp_path: Path, sqlite_engine: Engine) -> None:
    add_messages(sqlite_engine, 1)
    stop = asyncio.Event()
    async with notification_sender(Settings(_env_file=None, data_dir=tmp_path), sqlite_engine, stop):
        await asyncio.sleep(0.1)
    assert set(sent_at(sqlite_engine).values()) == {None}
    assert not stop.is_set()


async def test_run_sender_survives_a_database_outage(tmp_path: Path, receiver: Receiver) -> None:
    from disputeflow.db.engine import make_engine

    engine = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.db'}")  # no schema: every query fails
    sender = WebhookSender(engine, receiver.url)
    stop = asyncio.Event()
    task = asyncio.create_task(run_sender(sender, stop))
    await asyncio.sleep(0.2)
    assert not task.done()  # logged and retrying, not dead
    stop.set()
    await asyncio.wait_for(task, 5)
    sender.close()


def test_an_existing_database_gets_the_unsent_index(engine: Engine) -> None:
    """The sender's every-second lookup reads a partial index of unsent rows, and a database made
    before that index existed (made by `create_all`, before migrations) gets it at the next start."""
    with engine.begin() as conn:
        migrate.downgrade(conn, "0001")  # the schema of the last release without migrations...
        conn.execute(text("DROP TABLE alembic_version"))  # ...made by create_all...
        conn.execute(text("DROP INDEX ix_outbox_unsent"))  # ...before the index existed
    create_schema(engine)
    assert "ix_outbox_unsent" in {index["name"] for index in inspect(engine).get_indexes("outbox")}
    if is_sqlite(engine):
        query = next_unsent().compile(engine, compile_kwargs={"literal_binds": True})
        with engine.connect() as conn:
            plan = conn.execute(text(f"EXPLAIN QUERY PLAN {query}")).all()
        assert "USING INDEX ix_outbox_unsent" in plan[0][-1]


async def test_the_sender_survives_the_webhook_and_the_database_failing_together(
        sqlite_engine: Engine, receiver: Receiver, caplog: pytest.LogCaptureFixture) -> None:
    add_messages(sqlite_engine, 1)

    def database_goes_down() -> None:
        with sqlite_engine.begin() as conn:
            conn.execute(text("DROP TABLE IF EXISTS outbox"))

    receiver.status, receiver.before_answer = 503, database_goes_down
    sender = WebhookSender(sqlite_engine, receiver.url)
    stop = asyncio.Event()
    task = asyncio.create_task(run_sender(sender, stop))
    try:
        await until(lambda: "the backlog is unknown" in caplog.text)
        await asyncio.sleep(0.1)
        assert not task.done()  # refused, and the backlog unreadable: logged, and still running
    finally:
        stop.set()
        await asyncio.wait_for(task, 5)
        sender.close()


def test_a_notification_refused_for_good_is_parked_and_the_rest_go_on(
        engine: Engine, database_url: str, receiver: Receiver, monkeypatch: pytest.MonkeyPatch,
        capsys: pytest.CaptureFixture[str]) -> None:
    from disputeflow import cli
    from disputeflow.db.engine import engine_for
    from disputeflow.settings import get_settings

    keys = add_messages(engine, 3)
    receiver.status_for = {keys[0]: 422, keys[1]: 429}  # 422: never; 429: later
    sender = WebhookSender(engine, receiver.url)
    try:
        with pytest.raises(DeliveryFailed, match="HTTP 429"):  # the first is parked, the second waits
            sender.deliver_all()
        with Session(engine) as session:
            assert [(m.dedupe_key, p.reason) for m, p in parked(session)] == [(keys[0], "HTTP 422 from the webhook")]
            assert undelivered(session)[0] == 2  # the 429 one and the one behind it; not the parked one
        del receiver.status_for[keys[1]]
        assert sender.deliver_all() == 2
        assert receiver.keys() == keys[1:]

        # Put back in line by hand, once the gateway is fixed: delivered next, after nothing else.
        monkeypatch.setenv("DATABASE_URL", database_url)
        get_settings.cache_clear()
        try:
            assert cli.main(["notifications", "parked"]) == 0
            out = capsys.readouterr().out
            assert "deadline_breached" in out and "HTTP 422" in out and "1 parked" in out
            receiver.status_for.clear()
            assert cli.main(["notifications", "redeliver", "--all"]) == 0
            assert "1 notification(s) back in line" in capsys.readouterr().out
        finally:
            engine_for(database_url).dispose()
            get_settings.cache_clear()
        assert sender.deliver_all() == 1
        assert receiver.keys() == keys[1:] + keys[:1]
        with Session(engine) as session:
            assert parked(session) == [] and undelivered(session)[0] == 0
    finally:
        sender.close()


def test_a_delivery_never_carries_the_notifications_text(engine: Engine, receiver: Receiver) -> None:
    story = "工地拖欠三个月工资，包工头失联，电话13800138000"
    with write_session(engine) as session:
        session.add(OutboxMessage(
            dedupe_key="370102-20261130-0001:1:emergency_registered", case_id="370102-20261130-0001",
            kind="emergency_registered", recipient_role="supervisor", region_code="370102",
            payload={"event_seq": 1, "summary": story, "reason": "张三说"}, created_at=T0))
    sender = WebhookSender(engine, receiver.url, secret=SECRET)
    try:
        assert sender.deliver_all() == 1
    finally:
        sender.close()
    sent = json.dumps(receiver.received[0][1], ensure_ascii=False)
    assert "370102-20261130-0001" in sent
    for text_ in (story, "13800138000", "张三"):
        assert text_ not in sent


@pytest.mark.parametrize("url", ["http://gateway.example/hook", "http://10.0.0.5/hook", "ftp://127.0.0.1/hook"])
def test_a_webhook_off_this_machine_must_be_https(url: str, sqlite_engine: Engine, tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="must be https|scheme should be 'http' or 'https'"):
        Settings(_env_file=None, data_dir=tmp_path, notify_webhook_url=url, notify_webhook_secret=SECRET)
    with pytest.raises(ValueError, match="must be https"):
        WebhookSender(sqlite_engine, url, secret=SECRET)


@pytest.mark.parametrize("url", ["https://gateway.example/hook", "http://127.0.0.1:9/hook",
                                 "http://localhost:9/hook", "http://[::1]:9/hook"])
def test_https_or_loopback_is_accepted(url: str, tmp_path: Path) -> None:
    settings = Settings(_env_file=None, data_dir=tmp_path, notify_webhook_url=url, notify_webhook_secret=SECRET)
    assert settings.notify_webhook_url is not None


def test_a_webhook_needs_a_long_enough_secret(tmp_path: Path) -> None:
    url = "https://gateway.example/hook"
    with pytest.raises(ValueError, match="needs DISPUTEFLOW_NOTIFY_WEBHOOK_SECRET"):
        Settings(_env_file=None, data_dir=tmp_path, notify_webhook_url=url)
    for short in ("short-secret", "whsec_" + base64.b64encode(b"x" * 16).decode()):
        with pytest.raises(ValueError, match="at least 24 bytes"):
            Settings(_env_file=None, data_dir=tmp_path, notify_webhook_url=url, notify_webhook_secret=short)
    with pytest.raises(ValueError, match="base64"):
        Settings(_env_file=None, data_dir=tmp_path, notify_webhook_url=url, notify_webhook_secret="whsec_***")


def test_the_sqlite_files_and_their_folder_are_private(tmp_path: Path) -> None:
    import stat

    database = tmp_path / "new" / "disputeflow.db"
    engine = make_engine(f"sqlite:///{database.as_posix()}")
    try:
        create_schema(engine)
        assert stat.S_IMODE(database.stat().st_mode) == 0o600
        assert stat.S_IMODE(database.parent.stat().st_mode) == 0o700
        for companion in database.parent.glob("disputeflow.db-*"):  # WAL and shared memory
            assert stat.S_IMODE(companion.stat().st_mode) & 0o077 == 0, companion
        sender = WebhookSender(engine, "http://127.0.0.1:9/hook")
        try:
            sender.deliver_all()
        finally:
            sender.close()
        lock = database.parent / "disputeflow.db.sender.lock"
        assert lock.exists() and stat.S_IMODE(lock.stat().st_mode) == 0o600
    finally:
        engine.dispose()
