"""Prometheus metrics of the API process: its requests, intake and actions, and the read model's figures.

Served on a port of its own (`DISPUTEFLOW_API_METRICS_PORT` on `DISPUTEFLOW_METRICS_HOST`), not on
the API's: a reverse proxy that publishes the API never publishes these. No label carries a case
id, a user id or anything a caller said: routes are labelled by their template
(`/cases/{case_id}`), regions by their administrative code, clocks by their policy name.

The read-model figures are computed on scrape by a few aggregate queries, each served by an index,
and kept for `DISPUTEFLOW_METRICS_CACHE_SECONDS`, so scrapes stay cheap at 100k cases.
(The worker's metrics are the Temporal SDK's own, see `worker.py`.)
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime, timedelta

from prometheus_client import CollectorRegistry, Counter, Histogram, start_http_server
from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.registry import Collector
from sqlalchemy import bindparam, text
from sqlalchemy.engine import Engine

from disputeflow.db.models import UtcDateTime

log = logging.getLogger(__name__)

REGISTRY = CollectorRegistry(auto_describe=True)

HTTP_REQUESTS = Counter(
    "disputeflow_http_requests", "API requests answered, by method, route template and status code",
    ["method", "route", "status"], registry=REGISTRY,
)
HTTP_DURATION = Histogram(
    "disputeflow_http_request_duration_seconds", "Time to answer an API request, by method and route template",
    ["method", "route"], registry=REGISTRY,
    buckets=(0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
INTAKE = Counter(
    "disputeflow_intake_requests", "POST /cases answered, by outcome (created, replayed, refused, failed)",
    ["outcome"], registry=REGISTRY,
)
INTAKE_DURATION = Histogram(
    "disputeflow_intake_duration_seconds", "Time to register a case (POST /cases answered 201)",
    registry=REGISTRY, buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)
ACTIONS = Counter(
    "disputeflow_actions", "Actions on cases answered, by action and outcome (applied, refused, failed)",
    ["action", "outcome"], registry=REGISTRY,
)
ACTION_DURATION = Histogram(
    "disputeflow_action_duration_seconds", "Time to apply an action (answered 2xx), by action",
    ["action"], registry=REGISTRY, buckets=(0.025, 0.05, 0.1, 0.25, 0.5, 1, 2.5, 5, 10),
)

AT_RISK_WINDOW = timedelta(hours=24)
UNMATCHED_ROUTE = "unmatched"


def outcome(status: int) -> str:
    if status < 400:
        return "applied"
    return "failed" if status >= 500 else "refused"


def observe_request(method: str, route: str, status: int, seconds: float) -> None:
    """Count one answered request; intake and actions also by their own names."""
    HTTP_REQUESTS.labels(method, route, str(status)).inc()
    HTTP_DURATION.labels(method, route).observe(seconds)
    if method == "POST" and route == "/cases":
        result = {201: "created", 200: "replayed"}.get(status) or ("failed" if status >= 500 else "refused")
        INTAKE.labels(result).inc()
        if status == 201:
            INTAKE_DURATION.observe(seconds)
    elif method == "POST" and route.startswith("/cases/{case_id}/actions/"):
        action = route.rsplit("/", 1)[1]
        ACTIONS.labels(action, outcome(status)).inc()
        if status < 400:
            ACTION_DURATION.labels(action).observe(seconds)


# -- read-model figures ------------------------------------------------------------------------

# Written as the partial indexes' conditions are (disputeflow.db.models): SQLite uses those only
# when a query repeats the condition term for term.
_OPEN_CASES = """SELECT substr(region_code, 1, 4) AS city, stage, count(*) FROM cases
                 WHERE closed_at IS NULL GROUP BY city, stage"""
_OPEN_BREACHES = """SELECT region_code, name, count(*) FROM clocks
                    WHERE status IN ('running', 'paused') AND {breached} GROUP BY region_code, name"""
_AT_RISK = """SELECT region_code, name, count(*) FROM clocks
              WHERE status IN ('running', 'paused') AND {unbreached} AND due_at <= :until
              GROUP BY region_code, name"""
_BACKLOG = """SELECT count(*), min(created_at) FROM outbox WHERE sent_at IS NULL
              AND NOT EXISTS (SELECT 1 FROM notification_parked p WHERE p.outbox_id = outbox.id)"""
_NEWEST_EVENT = "SELECT max(at) FROM case_events"


def _aware(value: object) -> datetime | None:
    """A timestamp column read raw (text on SQLite, a datetime on PostgreSQL) as an aware UTC datetime."""
    if value is None:
        return None
    moment = value if isinstance(value, datetime) else datetime.fromisoformat(str(value))
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


class ReadModelCollector(Collector):
    """The product's figures, from the read model, on scrape (cached for `cache_seconds`)."""

    def __init__(self, engine: Callable[[], Engine | None], *, cache_seconds: float = 15.0,
                 webhook_configured: bool = False, now: Callable[[], datetime] = lambda: datetime.now(UTC)) -> None:
        self.engine = engine
        self.cache_seconds = cache_seconds
        self.webhook_configured = webhook_configured
        self.now = now
        self._lock = threading.Lock()
        self._cached: list[Metric] | None = None
        self._cached_at = 0.0

    def describe(self) -> Iterator[Metric]:
        return iter(())  # computed on scrape: nothing to check at registration

    def collect(self) -> Iterator[Metric]:
        with self._lock:
            if self._cached is None or time.monotonic() - self._cached_at >= self.cache_seconds:
                self._cached = self._compute()
                self._cached_at = time.monotonic()
            return iter(self._cached)

    def _compute(self) -> list[Metric]:
        started = time.perf_counter()
        up = GaugeMetricFamily("disputeflow_read_model_up", "1 when the last scrape could read the read model")
        engine = self.engine()
        if engine is None:
            up.add_metric([], 0)
            return [up]
        try:
            families = self._query(engine)
        except Exception as exc:  # noqa: BLE001 - a scrape must answer; the figures are missing then
            log.warning("metrics: cannot read the read model: %s", (str(exc).splitlines() or [repr(exc)])[0])
            up.add_metric([], 0)
            return [up]
        up.add_metric([], 1)
        took = GaugeMetricFamily("disputeflow_read_model_scrape_seconds", "Time the read-model figures took to compute")
        took.add_metric([], time.perf_counter() - started)
        return [up, took, *families]

    def _query(self, engine: Engine) -> list[Metric]:
        now = self.now()
        postgres = engine.dialect.name == "postgresql"
        breached = "breached" if postgres else "breached = 1"
        unbreached = "NOT breached" if postgres else "breached = 0"
        open_cases = GaugeMetricFamily("disputeflow_open_cases", "Cases not closed, by city (first 4 digits of the "
                                       "region code) and stage", labels=["region", "stage"])
        breaches = GaugeMetricFamily("disputeflow_open_breaches", "Running or paused clocks past their deadline, by "
                                     "region code and clock", labels=["region", "clock"])
        at_risk = GaugeMetricFamily("disputeflow_clocks_at_risk", "Running or paused clocks not breached that fall due "
                                    "within 24 hours, by region code and clock", labels=["region", "clock"])
        backlog = GaugeMetricFamily("disputeflow_notifications_undelivered", "Notifications not delivered to the "
                                    "webhook (parked ones aside); without a webhook none are, and it only grows")
        oldest = GaugeMetricFamily("disputeflow_notifications_oldest_undelivered_age_seconds",
                                   "Age of the oldest undelivered notification (0 when there is none)")
        webhook = GaugeMetricFamily("disputeflow_notifications_webhook_configured",
                                    "1 when DISPUTEFLOW_NOTIFY_WEBHOOK_URL is set (the backlog figures then matter)")
        lag = GaugeMetricFamily("disputeflow_projection_lag_seconds", "Seconds since the newest event in the read "
                                "model: grows when the projection stalls (and when nothing happens at all)")
        with engine.connect() as conn:
            for city, stage, count in conn.execute(text(_OPEN_CASES)):
                open_cases.add_metric([city, stage], count)
            for region, clock, count in conn.execute(text(_OPEN_BREACHES.format(breached=breached))):
                breaches.add_metric([region, clock], count)
            at_risk_query = text(_AT_RISK.format(unbreached=unbreached)).bindparams(
                bindparam("until", type_=UtcDateTime()))
            for region, clock, count in conn.execute(at_risk_query, {"until": now + AT_RISK_WINDOW}):
                at_risk.add_metric([region, clock], count)
            waiting, first = conn.execute(text(_BACKLOG)).one()
            newest = _aware(conn.execute(text(_NEWEST_EVENT)).scalar())
        backlog.add_metric([], waiting)
        first_at = _aware(first)
        oldest.add_metric([], max(0.0, (now - first_at).total_seconds()) if first_at else 0.0)
        webhook.add_metric([], 1 if self.webhook_configured else 0)
        lag.add_metric([], max(0.0, (now - newest).total_seconds()) if newest else 0.0)
        return [open_cases, breaches, at_risk, backlog, oldest, webhook, lag]


def serve(host: str, port: int) -> Callable[[], None] | None:
    """Serve `REGISTRY` on http://host:port/metrics in a thread; returns how to stop it, or None
    when the port cannot be bound (logged: the API serves cases without its metrics)."""
    try:
        server, thread = start_http_server(port, addr=host, registry=REGISTRY)
    except OSError as exc:
        log.error("metrics: cannot listen on %s:%d (%s); the API runs without /metrics", host, port, exc.strerror)
        return None
    log.info("metrics on http://%s:%d/metrics", host, port)

    def stop() -> None:
        server.shutdown()
        server.server_close()
        thread.join(5)

    return stop
