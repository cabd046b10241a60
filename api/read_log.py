"""Recording who was served a caller's data unmasked, before the answer leaves the API.

Routes that answer with caller data take `ReadLogDep` and hand it what they built: every part that
disclosed unmasked fields (`api.schemas._Discloses.disclosed()`) becomes a row of the read log
(`disputeflow.db.reads`). The auditors' routes that hand out a case's history (the timeline, the raw
history, the codec's decrypted payloads) record each read with `access`, by kind. The row is
committed before the answer is sent; if it cannot be written the request fails (503: the database
is unavailable) rather than disclose without a record.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime
from typing import Annotated, Any

from fastapi import Depends, Request
from sqlalchemy.engine import Engine

from api.auth import ActorDep
from api.deps import EngineDep, NowDep
from disputeflow.db import reads
from disputeflow.db.engine import write_session
from disputeflow.domain.actions import Actor


@dataclass
class ReadLog:
    engine: Engine
    actor: Actor
    route: str  # "GET /cases/{case_id}": the template, never the URL (no query string)
    now: datetime

    def record(self, parts: Iterable[Any]) -> int:
        """Record what `parts` disclosed; returns the number of rows written (0: nothing unmasked)."""
        disclosed = [d for part in parts for d in part.disclosed()]
        if not disclosed:
            return 0
        with write_session(self.engine) as session:
            return reads.record(session, actor=self.actor, disclosed=disclosed, route=self.route, at=self.now)

    async def arecord(self, parts: Iterable[Any]) -> int:
        return await asyncio.to_thread(self.record, list(parts))

    def access(self, case_ids: Iterable[str], *, kind: str, detail: str) -> int:
        """Record a read of cases' histories (`kind`: timeline, history, payloads), before the answer."""
        case_ids = list(case_ids)
        if not case_ids:
            return 0
        with write_session(self.engine) as session:
            return reads.record_access(session, actor=self.actor, case_ids=case_ids, kind=kind, detail=detail,
                                       route=self.route, at=self.now)

    async def aaccess(self, case_ids: Iterable[str], *, kind: str, detail: str) -> int:
        return await asyncio.to_thread(self.access, list(case_ids), kind=kind, detail=detail)


async def _read_log(request: Request, actor: ActorDep, engine: EngineDep, now: NowDep) -> ReadLog:
    route = request.scope.get("route")
    template = getattr(route, "path", None) or "?"
    return ReadLog(engine=engine, actor=actor, route=f"{request.method} {template}", now=now)


ReadLogDep = Annotated[ReadLog, Depends(_read_log)]
