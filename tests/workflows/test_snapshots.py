"""The snapshot queue on its own: written one at a time, in order, tickets answered when their turn is done."""

from __future__ import annotations

import asyncio

from workflows.snapshots import SnapshotQueue


class Database:
    """A writer that holds each write until released, and records the order."""

    def __init__(self) -> None:
        self.written: list[str] = []
        self.in_flight = 0
        self.most_at_once = 0
        self.gate = asyncio.Event()

    async def write(self, snapshot: str) -> None:
        self.in_flight += 1
        self.most_at_once = max(self.most_at_once, self.in_flight)
        await self.gate.wait()
        self.written.append(snapshot)
        self.in_flight -= 1


async def test_snapshots_are_written_one_at_a_time_in_order() -> None:
    database = Database()
    queue = SnapshotQueue(database.write)
    tickets = [queue.put(name) for name in ("opened", "warned", "escalated")]
    assert tickets == [1, 2, 3] and not queue.idle
    second = asyncio.create_task(queue.written(tickets[1]))
    everything = asyncio.create_task(queue.written())
    await asyncio.sleep(0)
    assert not second.done() and database.written == []  # the database is holding the first write

    database.gate.set()
    await second
    assert database.written[:2] == ["opened", "warned"]
    await everything
    assert database.written == ["opened", "warned", "escalated"] and queue.idle
    assert database.most_at_once == 1


async def test_a_ticket_already_written_answers_at_once_and_a_later_put_starts_a_new_writer() -> None:
    database = Database()
    database.gate.set()
    queue = SnapshotQueue(database.write)
    first = queue.put("opened")
    await queue.written(first)
    await asyncio.wait_for(queue.written(first), 0.1)  # nothing left to wait for
    assert queue.idle
    await queue.written(queue.put("closed"))
    assert database.written == ["opened", "closed"]


async def test_a_gate_holds_the_first_write_after_idle_until_it_opens_but_not_the_writes_queued_behind() -> None:
    database = Database()
    database.gate.set()
    opened = asyncio.Event()
    passes = 0

    def gate():
        nonlocal passes
        passes += 1
        return opened.wait()

    queue = SnapshotQueue(database.write, gate=gate)
    first, second = queue.put("opened"), queue.put("warned")
    for _ in range(3):
        await asyncio.sleep(0)
    assert database.written == [] and not queue.idle  # held at the gate
    opened.set()
    await queue.written(second)
    assert database.written == ["opened", "warned"] and passes == 1  # one pass for the whole run of writes
    assert first < second
    await queue.written(queue.put("closed"))  # idle again: the next write passes the gate again
    assert database.written == ["opened", "warned", "closed"] and passes == 2
