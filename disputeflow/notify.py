"""Deliver the outbox to a webhook: the bridge to SMS, mail or chat gateways.

The worker runs `run_sender` when `DISPUTEFLOW_NOTIFY_WEBHOOK_URL` is set (https, or http to this
machine's loopback only; the settings refuse anything else). Each notification is POSTed as JSON,
oldest first: ids and links only (the case, the kind, who it is for, where to read it), never a
notification's free text, which may quote the caller's story. Headers, per Standard Webhooks
(https://www.standardwebhooks.com):

    webhook-id          the notification's key (the same on a redelivery; also `Idempotency-Key`)
    webhook-timestamp   seconds since the epoch, when this attempt was signed
    webhook-signature   v1,<base64 HMAC-SHA256 of "{webhook-id}.{webhook-timestamp}.{body}">

with the key `DISPUTEFLOW_NOTIFY_WEBHOOK_SECRET` (`whsec_<base64>` as Standard Webhooks writes
keys, or the text itself; at least 24 bytes). A receiver checks the signature and refuses a
timestamp more than a few minutes off.

A 2xx answer marks it sent. A 4xx other than 408 and 429 means the gateway will never take this
one: it is parked (logged, listed by `disputeflow notifications parked`) and the next one's turn
comes. Anything else (5xx, 408, 429, a timeout, no connection) leaves it waiting: the sender backs
off (1 s doubling to 60 s) and tries the same one again, so messages keep their order and nothing
is dropped. Delivery is at least once; receivers dedupe on the key.
"""

from __future__ import annotations

import asyncio
import base64
import hashlib
import hmac
import json
import logging
import time
from collections.abc import Callable
from datetime import datetime, timezone
from urllib.parse import quote

import httpx
from sqlalchemy.engine import Engine
from sqlmodel import Session

from disputeflow.db.models import OutboxMessage
from disputeflow.db.notifications import Refused, deliver_next, undelivered
from disputeflow.settings import check_webhook_url, webhook_key_bytes

log = logging.getLogger("disputeflow.notify")

IDLE_SECONDS = 1.0
FIRST_BACKOFF_SECONDS = 1.0
MAX_BACKOFF_SECONDS = 60.0
TIMEOUT_SECONDS = 5.0


class DeliveryFailed(Exception):
    """The webhook did not take the notification; the message says why."""


def webhook_body(message: OutboxMessage, api_url: str = "") -> bytes:
    """Ids and links only: the notification's `payload` (reasons, summaries) stays in the database."""
    base = api_url.rstrip("/")
    case = quote(message.case_id, safe="")
    return json.dumps({
        "id": message.id,
        "key": message.dedupe_key,
        "case_id": message.case_id,
        "event_seq": message.payload.get("event_seq") if isinstance(message.payload, dict) else None,
        "kind": message.kind,
        "recipient_role": message.recipient_role,
        "recipient_id": message.recipient_id,
        "region_code": message.region_code,
        "created_at": message.created_at.isoformat(),
        "links": {
            "case": f"{base}/cases/{case}",
            "notifications": f"{base}/me/notifications?case_id={case}",
        },
    }, ensure_ascii=False, separators=(",", ":"), sort_keys=True).encode()


def signature(key: bytes, message_id: str, timestamp: int, body: bytes) -> str:
    """`webhook-signature` of Standard Webhooks: v1,<base64 HMAC-SHA256 of id.timestamp.body>."""
    signed = f"{message_id}.{timestamp}.".encode() + body
    return "v1," + base64.b64encode(hmac.new(key, signed, hashlib.sha256).digest()).decode()


class WebhookSender:
    def __init__(self, engine: Engine, url: str, *, secret: str | None = None,
                 timeout: float = TIMEOUT_SECONDS, api_url: str = "",
                 clock: Callable[[], float] = time.time) -> None:
        self.engine = engine
        self.url = check_webhook_url(url)
        self.key = webhook_key_bytes(secret) if secret else None
        self.api_url = api_url
        self.clock = clock
        self.http = httpx.Client(timeout=timeout, follow_redirects=False)

    def close(self) -> None:
        self.http.close()

    def post(self, message: OutboxMessage) -> None:
        body = webhook_body(message, self.api_url)
        headers = {"Content-Type": "application/json", "Idempotency-Key": message.dedupe_key,
                   "webhook-id": message.dedupe_key}
        if self.key:
            timestamp = int(self.clock())
            headers["webhook-timestamp"] = str(timestamp)
            headers["webhook-signature"] = signature(self.key, message.dedupe_key, timestamp, body)
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
