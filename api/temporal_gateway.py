"""The API's one Temporal client: connected lazily on first use, then shared by every request."""

from __future__ import annotations

import asyncio
import time

from temporalio.client import Client
from temporalio.service import RetryConfig

from disputeflow.settings import Settings
from disputeflow.temporal import connect


# An HTTP caller waits ~2 s, not the SDK's default ~10 s, for a call to an unreachable server to
# give up; it then gets 503 + Retry-After and retries itself.
API_RETRY = RetryConfig(initial_interval_millis=100, max_interval_millis=1000, max_elapsed_time_millis=2000)


class TemporalUnavailable(Exception):
    """Temporal cannot be reached right now; routes answer 503 with Retry-After."""

    retry_after_seconds = 5


class TemporalGateway:
    """Creates the client once and caches it; a failed connection is tried again on a later call.

    The API starts whether or not Temporal is up. Once connected, the SDK reconnects by itself,
    so only the first connection needs this care. For `retry_interval` seconds after a failure,
    callers get the same error at once instead of each waiting out `connect_timeout` again.
    """

    def __init__(self, settings: Settings, *, connect_timeout: float = 2.0, retry_interval: float = 1.0) -> None:
        self.settings = settings
        self.connect_timeout = connect_timeout
        self.retry_interval = retry_interval
        self._client: Client | None = None
        self._lock = asyncio.Lock()
        self._last_error: str | None = None
        self._failed_at = 0.0

    @property
    def address(self) -> str:
        return self.settings.effective_temporal_address

    async def client(self) -> Client:
        """The shared client; raises `TemporalUnavailable` when Temporal cannot be reached."""
        if self._client is not None:
            return self._client
        async with self._lock:  # one connection attempt at a time: the client is created once
            if self._client is not None:
                return self._client
            if self._last_error is not None and time.monotonic() - self._failed_at < self.retry_interval:
                raise TemporalUnavailable(self._last_error)
            try:
                self._client = await asyncio.wait_for(connect(self.settings, retry_config=API_RETRY),
                                                      self.connect_timeout)
            except Exception as exc:  # noqa: BLE001 - every failure means "unavailable"
                reason = (
                    f"no answer within {self.connect_timeout:g} s"
                    if isinstance(exc, TimeoutError)
                    else (str(exc).splitlines() or [type(exc).__name__])[0]
                )
                self._last_error = f"Temporal at {self.address} is unavailable: {reason}"
                self._failed_at = time.monotonic()
                raise TemporalUnavailable(self._last_error) from exc
            self._last_error = None
            return self._client
