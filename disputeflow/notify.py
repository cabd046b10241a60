"""Deliver the outbox to a webhook: the bridge to SMS, mail or chat gateways.

The worker runs `run_sender` when `DISPUTEFLOW_NOTIFY_WEBHOOK_URL` is set. Each notification is
POSTed as JSON, oldest first, with

    Idempotency-Key           the notification's key (the same on a redelivery)
    X-Disputeflow-Signature   sha256=<hex HMAC-SHA256 of the body>, when a secret is set

A 2xx answer marks it sent. A 4xx other than 408 and 429 means the gateway will never take this
one: it is parked (logged, listed by `disputeflow notifications parked`) and the next one's turn
comes. Anything else (5xx, 408, 429, a timeout, no connection) leaves it waiting: the sender backs
off (1 s doubling to 60 s) and tries the same one again, so messages keep their order and nothing
is dropped. Delivery is at least once; receivers dedupe on the key.
"""

from __future__ import annotations

import asyncio
import hashlib
import hmac
import json
import logging
from collections.abc import Callable
from datetime import datetime, timezone

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session

from disputeflow.db.models import OutboxMessage
from disputeflow.db.notifications import Refused, deliver_next, undelivered

log = logging.getLogger("disputeflow.notify")

IDLE_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0


class DeliveryFailed(Exception):
    """The webhook did not take the notification; the message says why."""


def webhook_body(message: OutboxMessage) -> bytes:
    return json.dumps({
        "id": message.id,
        "key": message.dedupe_key,
        "case_id": message.case_id,
        "kind": message.kind,
        "recipient_role": message.recipient_role,
        "recipient_id": message.recipient_id,
        "region_code": message.region_code,
        "payload": message.payload,
        "created_at": message.created_at.isoformat(),
    }, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, body: bytes) -> str:
    return "sha256=" + hmac.new(secret.encode(), body, hashlib.sha256).hexdigest()


class WebhookSender:
    def __init__(self, engine: Engine, url: str, *, secret: str | None = None,
                 timeout: float = TIMEOUT_SECONDS) -> None:
        self.engine = engine
        self.url = url
        self.secret = secret
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def post(self, message: OutboxMessage) -> None:
        body = webhook_body(message)
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.dedupe_key}
        if self.secret:
            headers["X-Disputeflow-Signature"] = signature(self.secret, body)
        try:
            response = self.http.post(self.url, content=body, headers=headers)
        except httpx.HTTPError as exc:
            raise DeliveryFailed(f"{type(exc).__name__}: {exc}") from exc
        if response.is_success:
            return
        said = response.text[:200].strip()
        reason = f"HTTP {response.status_code} from the webhook" + (f": {said}" if said else "")
        if 400 <= response.status_code < 500 and response.status_code not in (408, 429):
            raise Refused(reason)
        raise DeliveryFailed(reason)

    def deliver_all(self, stop: Callable[[], bool] = lambda: False) -> int:
        """Deliver until none is waiting (or `stop()` says so); returns how many were sent. Raises
        DeliveryFailed (after recording the ones sent before it)."""
        sent = 0
        while not stop():
            outcome = deliver_next(self.engine, self.post, now=lambda: datetime.now(timezone.utc))
            if outcome is None:
                break
            if outcome == "parked":
                log.warning("webhook %s refused a notification for good: parked it "
                            "(`disputeflow notifications parked` lists them)", self.url)
            else:
                sent += 1
        return sent


async def run_sender(sender: WebhookSender, stop: asyncio.Event) -> None:
    """Deliver until `stop` is set: poll every second when idle, back off on failure."""
    backoff = FIRST_BACKOFF_SECONDS
    while not stop.is_set():
        try:
            sent = await asyncio.to_thread(sender.deliver_all, stop.is_set)
            if sent:
                log.info("delivered %d notification(s) to %s", sent, sender.url)
            backoff = FIRST_BACKOFF_SECONDS
            wait = IDLE_SECONDS
        except Exception as exc:  # noqa: BLE001 - the webhook or the database is down: keep trying, never die
            wait, backoff = backoff, min(backoff * 2, MAX_BACKOFF_SECONDS)
            if isinstance(exc, DeliveryFailed):
                log.warning("webhook %s refused a notification (%s); %s; retrying in %g s",
                            sender.url, exc, await asyncio.to_thread(_backlog, sender.engine), wait)
            else:
                log.exception("notification delivery failed; retrying in %g s", wait)
        try:
            await asyncio.wait_for(stop.wait(), wait)
        except asyncio.TimeoutError:
            pass


def _backlog(engine: Engine) -> str:
    """How many wait, and since when, for the log; never raises (the database may be down too)."""
    try:
        with Session(engine) as session:
            waiting, since = undelivered(session)
    except Exception as exc:  # noqa: BLE001
        return f"the backlog is unknown ({type(exc).__name__})"
    return f"{waiting} waiting since {since:%Y-%m-%d %H:%M:%S}" if since else "none waiting"
