"""Request dependencies, as named annotated types: `def route(session: SessionDep, ...)`."""

from __future__ import annotations

from collections.abc import Iterator
from typing import Annotated

from fastapi import Depends, Request
from sqlalchemy.engine import Engine
from sqlmodel import Session
from starlette.datastructures import State

from api.temporal_gateway import TemporalGateway
from disputeflow.db.engine import engine_for
from disputeflow.settings import Settings


def database_engine(state: State) -> Engine:
    """The app's engine. If the database was down at start-up, opening it (and creating the
    schema) is tried again here, so a database that comes back is picked up."""
    if state.engine is None:
        state.engine = engine_for(state.settings.effective_database_url)
    return state.engine


def _settings(request: Request) -> Settings:
    return request.app.state.settings


def _session(request: Request) -> Iterator[Session]:
    with Session(database_engine(request.app.state)) as session:
        yield session


def _temporal(request: Request) -> TemporalGateway:
    return request.app.state.temporal


SettingsDep = Annotated[Settings, Depends(_settings)]
SessionDep = Annotated[Session, Depends(_session)]
TemporalDep = Annotated[TemporalGateway, Depends(_temporal)]
