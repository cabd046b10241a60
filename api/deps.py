"""Request dependencies, as named annotated types: `def route(session: SessionDep, ...)`."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from datetime import datetime
from typing import Annotated

from fastapi import Depends, Header, Path, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.datastructures import State

from api.temporal_gateway import TemporalGateway
from disputeflow import case_keys
from disputeflow.db.engine import engine_for
from disputeflow.db.intake import CaseNumbers
from disputeflow.domain import days
from disputeflow.pinning import PolicyPins
from disputeflow.settings import Settings


def database_engine(state: State) -> Engine:
    """The app's engine. If the database was down at start-up, opening it (and creating the
    schema) is tried again here, so a database that comes back is picked up."""
    if state.engine is None:
        state.engine = engine_for(state.settings.effective_database_url)
    return state.engine


# Dependencies are coroutines: FastAPI runs a plain `def` dependency in its thread pool, a hop
# that costs more than reading the app's state (a dozen of them per request doubled intake's CPU).
# Whatever may block (opening a database that was down, a session's last rollback) goes to a thread.


async def _settings(request: Request) -> Settings:
    return request.app.state.settings


async def _engine(request: Request) -> Engine:
    state = request.app.state
    return state.engine if state.engine is not None else await asyncio.to_thread(database_engine, state)


async def _session(request: Request) -> AsyncIterator[Session]:
    session = Session(await _engine(request))
    try:
        yield session
    finally:
        if session.in_transaction():  # a connection to give back: its rollback is a database call
            await asyncio.to_thread(session.close)
        else:
            session.close()


async def _temporal(request: Request) -> TemporalGateway:
    return request.app.state.temporal


async def _pins(request: Request) -> PolicyPins:
    return request.app.state.pins


def _prepare_case_keys(engine: Engine, case_ids: list[str]) -> None:
    """Each block of case numbers comes with its cases' data keys, made in one transaction by the
    key store of this process's Temporal client (once it is connected)."""
    if (store := case_keys.store_for(engine)) is not None:
        store.prepare(case_ids)


async def _case_numbers(request: Request) -> CaseNumbers:
    state = request.app.state
    if getattr(state, "case_numbers", None) is None:
        engine = await _engine(request)
        state.case_numbers = CaseNumbers(engine, on_block=lambda ids: _prepare_case_keys(engine, ids))
    return state.case_numbers


async def _now(request: Request) -> datetime:
    return await request.app.state.clock()


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
EngineDep = Annotated[Engine, Depends(_engine)]  # for `write_session` work
TemporalDep = Annotated[TemporalGateway, Depends(_temporal)]
PolicyPinsDep = Annotated[PolicyPins, Depends(_pins)]  # what intake pins to a new case
CaseNumbersDep = Annotated[CaseNumbers, Depends(_case_numbers)]  # numbers for intakes without a key
NowDep = Annotated[datetime, Depends(_now)]  # the instant a request is taken as made

# A case number (`370102-20261130-0007`); anything else cannot name a case.
CaseIdPath = Annotated[str, Path(pattern=r"^[A-Za-z0-9][A-Za-z0-9-]{0,39}$", examples=["370102-20261130-0007"],
                                 description="The case number")]

IdempotencyKey = Annotated[
    str | None,
    Header(
        alias="Idempotency-Key", pattern=r"^[\x21-\x7e]{1,64}$",
        description="Up to 64 visible ASCII characters, e.g. a UUID. A retried request with the same key "
        "takes effect once and answers like the first.",
    ),
]

# A day of the years 2000-2999, as the schema says it: `disputeflow.domain.days`.
Day = days.Day

