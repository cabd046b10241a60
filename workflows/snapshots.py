"""A queue that writes a workflow's snapshots in the background, one at a time, in order.

The case workflow puts a snapshot of the case for the read model after each change and goes on
at once: its timers never wait for the database. Whoever needs the read model to have caught up
(an action's caller, continue-as-new) waits for the ticket `put` returned. Plain asyncio, which
Temporal's workflow event loop runs deterministically; so it can be tested on its own.

A `gate` holds back the first write after the queue was idle: `put` calls it at once and the
write waits for what it returns. The case workflow's gate opens once its run loop has re-armed
its timer, so that a change's commands come out in one order (timer, then write) whether the
previous write's completion reached the workflow before the change or in the same activation.
Without it the order depends on how Temporal groups the history into activations, which is not
always the same live and on replay.
"""

from __future__ import annotations

import asyncio
from collections import deque
from collections.abc import Awaitable, Callable
from typing import Generic, TypeVar

T = TypeVar("T")


class SnapshotQueue(Generic[T]):
    def __init__(self, write: Callable[[T], Awaitable[object]],
                 gate: Callable[[], Awaitable[object]] | None = None) -> None:
        """`gate`: called by the `put` that wakes an idle queue; its writes wait for what it returns."""
        self._write = write
        self._gate = gate
        self._pending: deque[T] = deque()
        self._queued = 0  # snapshots ever put
        self._written = 0  # of which written
        self._waiters: list[tuple[int, asyncio.Future[None]]] = []
        self._writer: asyncio.Task[None] | None = None

    @property
    def idle(self) -> bool:
        """Every snapshot put so far is written."""
        return self._written == self._queued

    def put(self, snapshot: T) -> int:
        """Queue `snapshot` behind the others; returns its ticket for `written`."""
        self._pending.append(snapshot)
        self._queued += 1
        if self._writer is None or self._writer.done():
            opened = self._gate() if self._gate is not None else None
            self._writer = asyncio.get_running_loop().create_task(self._drain(opened))
        return self._queued

    async def written(self, ticket: int | None = None) -> None:
        """Wait until the snapshot with `ticket` (default: every one put so far) and those before it are written."""
        ticket = self._queued if ticket is None else ticket
        if self._written >= ticket:
            return
        waiter: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        self._waiters.append((ticket, waiter))
        await waiter

    async def _drain(self, opened: Awaitable[object] | None) -> None:
        if opened is not None:
            await opened
        while self._pending:
            await self._write(self._pending[0])
            self._pending.popleft()
            self._written += 1
            ready = [w for t, w in self._waiters if t <= self._written]
            self._waiters = [(t, w) for t, w in self._waiters if t > self._written]
            for waiter in ready:
                if not waiter.done():
                    waiter.set_result(None)
