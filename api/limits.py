"""Per-user rate limits: a token bucket per user (the token's `sub`) and class of route; 429 + Retry-After.

Every route built with `api.auth.router_for` takes a token from the user's `general` bucket
(`DISPUTEFLOW_RATE_LIMIT_PER_MINUTE`); listings and searches also from their `search` bucket, and
the expensive routes (replay, history export, timeline, audit check, whole-log verification) from
their `expensive` bucket, both much smaller. A bucket holds a minute's worth and refills evenly.

The buckets live in the API process's memory: with one process that is exact; with N processes
behind a balancer a user gets up to N times the limit, so run one API process or put the same
limits in the reverse proxy (which should also limit unauthenticated requests by address: they
never reach a bucket, as a request without a valid token is refused first).
"""

from __future__ import annotations

import math
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from fastapi import Request

from api.errors import ApiError
from disputeflow.domain.actions import Actor
from disputeflow.settings import Settings

# (method, route template) -> its own bucket besides the general one.
ROUTE_CLASSES: dict[tuple[str, str], str] = {
    ("GET", "/cases"): "search",
    ("POST", "/cases/search"): "search",
    ("POST", "/cases/{case_id}/replay"): "expensive",
    ("GET", "/cases/{case_id}/history"): "expensive",
    ("GET", "/cases/{case_id}/timeline"): "expensive",
    ("GET", "/cases/{case_id}/audit/check"): "expensive",
    ("POST", "/audit/verify"): "expensive",
}
MAX_TRACKED = 50_000  # buckets kept; beyond, full ones are forgotten (a full bucket is the same as none)


class RateLimited(ApiError):
    """Too many requests from this user: 429, retry after `Retry-After` seconds."""

    status_code = 429

    def __init__(self, retry_after: int, what: str = "") -> None:
        super().__init__(f"too many {what + ' ' if what else ''}requests from you; retry after {retry_after} s")
        self.headers = {"Retry-After": str(retry_after)}


@dataclass
class _Bucket:
    tokens: float
    at: float


class RateLimiter:
    """Token buckets per (user, class). Thread-safe (sync routes run in threads)."""

    def __init__(self, per_minute: dict[str, int], clock: Callable[[], float] = time.monotonic) -> None:
        self.per_minute = dict(per_minute)
        self.clock = clock
        self._buckets: dict[tuple[str, str], _Bucket] = {}
        self._lock = threading.Lock()

    @classmethod
    def from_settings(cls, settings: Settings) -> RateLimiter:
        return cls({"general": settings.rate_limit_per_minute, "search": settings.rate_limit_search_per_minute,
                    "expensive": settings.rate_limit_expensive_per_minute})

    def take(self, user: str, classes: list[str]) -> tuple[str, int] | None:
        """Take one token from each of the user's buckets of `classes`, all or none. None if taken;
        else the class that is empty and the whole seconds until it has a token again."""
        now = self.clock()
        with self._lock:
            if len(self._buckets) > MAX_TRACKED:
                self._forget_full(now)
            buckets = []
            for name in classes:
                capacity = float(self.per_minute[name])
                bucket = self._buckets.setdefault((user, name), _Bucket(capacity, now))
                bucket.tokens = min(capacity, bucket.tokens + (now - bucket.at) * capacity / 60.0)
                bucket.at = now
                if bucket.tokens < 1.0:
                    wait = (1.0 - bucket.tokens) * 60.0 / capacity
                    return name, max(1, math.ceil(wait))
                buckets.append(bucket)
            for bucket in buckets:
                bucket.tokens -= 1.0
        return None

    def _forget_full(self, now: float) -> None:
        for key, bucket in list(self._buckets.items()):
            capacity = float(self.per_minute[key[1]])
            if bucket.tokens + (now - bucket.at) * capacity / 60.0 >= capacity:
                del self._buckets[key]


def limiter_of(request: Request) -> RateLimiter:
    state = request.app.state
    if getattr(state, "rate_limiter", None) is None:
        state.rate_limiter = RateLimiter.from_settings(state.settings)
    return state.rate_limiter


def enforce(request: Request, actor: Actor) -> None:
    """Raise `RateLimited` if this user has used up a bucket this route draws on."""
    route = request.scope.get("route")
    template = getattr(route, "path", "")
    classes = ["general"]
    if (extra := ROUTE_CLASSES.get((request.method, template))) is not None:
        classes.append(extra)
    refused = limiter_of(request).take(actor.user_id, classes)
    if refused is not None:
        name, retry_after = refused
        raise RateLimited(retry_after, "" if name == "general" else name)
