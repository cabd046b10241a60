"""The read model at scale, on both databases: the seeder fills every table consistently, the
compliance counters agree with a recount of the clocks however clocks are written, and the list,
inbox, search, board and report queries are served by indexes (no full scan of cases, tasks or
clocks). Small N here; `benchmarks/read_model_scale.py` measures 100,000 cases."""

from __future__ import annotations

import re
from collections import Counter
from collections.abc import Callable, Iterator
from datetime import date, datetime, timedelta

import pytest
from sqlalchemy import event, func, text
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from disputeflow.db import queries, reports
from disputeflow.db.engine import create_schema, make_engine, write_session
from disputeflow.db.models import (
    CaseEventRecord, CaseNumberCounter, CaseRecord, CaseTaskRecord, ClockRecord, ComplianceCount, Mediator,
    phone_digits,
)
from disputeflow.db.seed import SeedError, seed
from disputeflow.domain.calendar import SHANGHAI
from disputeflow.domain.intake import Caller
from tests.conftest import schema_database

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=SHANGHAI)
CASES = 2000


def _seed(engine: Engine) -> Engine:
    report = seed(engine, cases=CASES, now=NOW, seed=7, batch_size=500, workers=0)
    assert report.cases == CASES
    return engine


@pytest.fixture
def seeded(engine: Engine) -> Engine:
    """A seeded database of each kind for a test that writes to it."""
    return _seed(engine)


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def seeded_once(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """One seeded database of each kind, shared by the tests that only read it (a seed of 2,000
    cases takes seconds; the index tests alone would otherwise seed 26 times)."""
    with schema_database(request, tmp_path_factory, request.param) as engine:
        yield _seed(engine)


def _all_compliance_agrees(session: Session) -> None:
    for period, start, end, level, prefix in [
        ("month", date(2025, 12, 1), date(2026, 12, 1), 6, None),
        ("week", date(2026, 1, 7), date(2026, 11, 20), 4, "37"),
        ("day", date(2026, 10, 30), date(2026, 11, 3), 2, None),
        ("month", date(2026, 3, 15), date(2026, 3, 20), 6, "3702"),
        ("week", date(2026, 2, 4), date(2026, 11, 30), 2, "3702"),  # a level above the scope's own
        ("month", date(2026, 1, 1), date(2026, 12, 1), 4, "370211"),
        ("day", date(2026, 11, 1), date(2026, 11, 30), 6, "37"),
    ]:
        kw = dict(start=start, end=end, period=period, group_by_region_level=level, region_prefix=prefix)
        assert reports.compliance(session, **kw) == reports.compliance_from_clocks(session, **kw), kw


def test_the_seed_fills_every_table_consistently(seeded_once: Engine) -> None:
    with Session(seeded_once) as session:
        cases = {c.case_id: c for c in session.exec(select(CaseRecord))}
        tasks = list(session.exec(select(CaseTaskRecord)))
        clocks = list(session.exec(select(ClockRecord)))
        events = list(session.exec(select(CaseEventRecord)))
        assert len(cases) == CASES
        closed = [c for c in cases.values() if c.closed_at is not None]
        assert 0.35 < len(closed) / CASES < 0.65  # the issue's mix: 48% closed
        assert all(c.stage == "closed" and c.final_outcome for c in closed)
        assert {c.stage for c in cases.values()} >= {"triage", "mediation", "referred", "legal_aid_review", "closed"}
        assert len({c.region_code for c in cases.values()}) > 20
        assert all(c.opened_at <= NOW and c.opened_at > NOW - timedelta(days=366) for c in cases.values())
        # Generated numbers in the form intake stores, and their searchable digits.
        for case in list(cases.values())[:200]:
            assert Caller.model_validate({"name": case.caller_name, "phone": case.caller_phone}).phone == case.caller_phone
            assert case.caller_phone_digits == phone_digits(case.caller_phone)

        open_tasks = Counter(t.case_id for t in tasks if t.status == "open")
        assert all(open_tasks[c.case_id] >= 1 for c in cases.values() if c.closed_at is None)
        assert all(open_tasks[c.case_id] == 0 for c in closed)
        assert all(t.case_id in cases and t.region_code == cases[t.case_id].region_code for t in tasks)
        mediator_tasks = [t for t in tasks if t.status == "open" and t.assignee_role == "mediator"]
        assert mediator_tasks and all(t.assignee_id == cases[t.case_id].mediator_id for t in mediator_tasks)

        assert all(k.case_id in cases and k.region_code == cases[k.case_id].region_code for k in clocks)
        assert {k.case_id for k in clocks} == set(cases)  # every case ran its triage clock at least
        assert all(k.started_at < k.due_at for k in clocks)
        assert all((k.status in ("met", "cancelled")) == (k.ended_at is not None) for k in clocks)
        assert all(k.status in ("met", "cancelled") for k in clocks if cases[k.case_id].closed_at)
        assert any(k.breached for k in clocks) and any(k.warnings_fired for k in clocks)
        assert all(k.breached_at == k.due_at for k in clocks if k.breached)
        assert {k.name for k in clocks} >= {"triage_response", "mediation_conclusion", "referral_acceptance"}

        seqs: dict[str, list[int]] = {}
        for e in events:
            seqs.setdefault(e.case_id, []).append(e.seq)
        assert set(seqs) == set(cases)
        assert all(sorted(s) == list(range(1, len(s) + 1)) and cases[c].event_count == len(s) for c, s in seqs.items())

        # Case numbers continue after the seeded ones; generated mediators exist for the assignments.
        counters = {(n.region_code, n.day): n.last for n in session.exec(select(CaseNumberCounter))}
        for case_id in cases:
            region, day, number = case_id.split("-")
            assert counters[(region, day)] >= int(number)
        mediators = set(session.exec(select(Mediator.id)))
        assert {c.mediator_id for c in cases.values() if c.mediator_id} <= mediators

        assert session.exec(select(func.count()).select_from(ComplianceCount)).one() > 0
        _all_compliance_agrees(session)


def test_the_seed_is_deterministic_and_refuses_a_database_with_cases(seeded_once: Engine, tmp_path) -> None:
    other = make_engine(f"sqlite:///{(tmp_path / 'again.db').as_posix()}")
    create_schema(other)
    seed(other, cases=CASES, now=NOW, seed=7, batch_size=500, workers=0)
    with Session(seeded_once) as a, Session(other) as b:
        def rows(session: Session) -> list:
            return sorted((c.case_id, c.stage, c.caller_phone, c.opened_at) for c in session.exec(select(CaseRecord)))
        assert rows(a) == rows(b)
    other.dispose()
    with pytest.raises(SeedError):
        seed(seeded_once, cases=10, now=NOW)


def test_the_counters_follow_every_write_of_a_clock(seeded: Engine) -> None:
    """Through the ORM, as apply_projection writes: a new clock, an open one met late, one cancelled,
    one extended after its breach, one deleted, and one changed after being expired by a commit."""
    with write_session(seeded) as session:
        running = list(session.exec(select(ClockRecord).where(ClockRecord.status == "running")
                                    .order_by(ClockRecord.clock_id).limit(4)))
        a, b, c, d = running
        a.status, a.ended_at, a.met_at = "met", a.due_at + timedelta(minutes=1), a.due_at + timedelta(minutes=1)
        b.status, b.ended_at = "cancelled", b.started_at + timedelta(minutes=5)
        c.breached, c.breached_at, c.due_at = True, c.due_at, c.due_at + timedelta(days=30)
        session.delete(d)
        session.add(ClockRecord(
            clock_id=f"{a.case_id}:extra-99", case_id=a.case_id, name="escalation_response", title="t",
            stage="escalated", region_code=a.region_code, unit="working_days", target=3, started_at=NOW,
            due_at=NOW + timedelta(days=3), status="running", policy_version="2026.1"))
    with write_session(seeded) as session:
        session.exec(select(ClockRecord).where(ClockRecord.status == "paused").limit(1)).first()
        paused = session.exec(select(ClockRecord).where(ClockRecord.status == "paused").limit(1)).first()
        session.commit()  # expires it: the next change has no loaded old values
        paused.status = "met"
        paused.ended_at = paused.met_at = NOW
    with Session(seeded) as session:
        _all_compliance_agrees(session)


async def test_the_compliance_route_answers_its_declared_model_from_plain_rows(
        seeded_once: Engine, tmp_path) -> None:
    """The route encodes plain rows itself (no model per row): byte for byte the JSON of its declared
    response model `Compliance`, filled from a recount of the clocks; the CSV likewise."""
    import httpx

    from api.app import create_app
    from api.auth import issue_token
    from api.routes.supervision import Compliance
    from disputeflow.settings import Settings

    seeded = seeded_once
    database_url = seeded.url.render_as_string(hide_password=False)
    settings = Settings(_env_file=None, database_url=database_url, data_dir=tmp_path,
                        temporal_address="127.0.0.1:9")  # never dialled by these routes
    asks = [("37", dict(start="2026-01-01", end="2026-12-01", period="month")),
            ("37", dict(start="2026-01-01", end="2026-12-01", period="week", group_by=4)),
            ("3702", dict(start="2026-01-07", end="2026-11-20", period="week", group_by=2)),
            ("3702", dict(start="2026-10-30", end="2026-11-03", period="day", region="370211")),
            ("37", dict(start="2026-03-15", end="2026-03-20", period="month", group_by=4))]
    app = create_app(settings)
    async with app.router.lifespan_context(app), httpx.AsyncClient(
            transport=httpx.ASGITransport(app=app), base_url="http://api") as http:
        for region, params in asks:
            token = issue_token(settings, user_id=f"sup-{region}", role="supervisor", region=region)
            headers = {"Authorization": f"Bearer {token}"}
            response = await http.get("/supervision/compliance", params=params, headers=headers)
            assert response.status_code == 200, response.text
            start, end = date.fromisoformat(params["start"]), date.fromisoformat(params["end"])
            own = params.get("region", region)
            with Session(seeded) as session:
                rows = reports.compliance_from_clocks(
                    session, start=start, end=end, period=params["period"], region_prefix=own,
                    group_by_region_level=params.get("group_by", 6))
            assert rows, params
            expected = Compliance(region=own, start=start, end=end, period=params["period"], rows=rows)
            assert response.content == expected.model_dump_json().encode(), params
            csv_text = (await http.get("/supervision/compliance.csv", params=params, headers=headers)).text
            assert csv_text == reports.compliance_csv(rows), params



# -- Indexes -----------------------------------------------------------------------------------


@pytest.fixture
def statements(seeded_once: Engine) -> Iterator[list[tuple[str, object]]]:
    captured: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            captured.append((statement, parameters))

    event.listen(seeded_once, "before_cursor_execute", capture)
    yield captured
    event.remove(seeded_once, "before_cursor_execute", capture)


def _plans(engine: Engine, captured: list[tuple[str, object]]) -> list[str]:
    """The plan of each captured statement, one text per statement."""
    plans = []
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            # Small tables: PostgreSQL would rightly read them whole. Ask whether an index *can* serve.
            conn.exec_driver_sql("SET enable_seqscan = off")
        for statement, parameters in list(captured):
            prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
            rows = conn.exec_driver_sql(prefix + statement, parameters).fetchall()
            plans.append("\n".join(str(row[-1] if engine.dialect.name == "sqlite" else row[0]) for row in rows))
    return plans


FULL_SCANS = {
    # SQLite: "SCAN cases USING INDEX ix_..." walks an index in order (the listing); "SCAN cases" reads the table.
    "sqlite": re.compile(r"\bSCAN (cases|clocks|case_tasks)\b(?! USING)"),
    "postgresql": re.compile(r"Seq Scan on (cases|clocks|case_tasks)\b"),
}


def _full_scans(engine: Engine, plan: str) -> list[str]:
    return [line.strip() for line in plan.splitlines() if FULL_SCANS[engine.dialect.name].search(line)]


def _phone_of_a_case(engine: Engine) -> str:
    with Session(engine) as session:
        return session.exec(select(CaseRecord.caller_phone).order_by(CaseRecord.case_id).offset(99)).first()


def _busiest_mediator(engine: Engine) -> str:
    with Session(engine) as session:
        return session.exec(
            select(CaseTaskRecord.assignee_id).where(CaseTaskRecord.status == "open",
                                                     CaseTaskRecord.assignee_id.is_not(None))
            .group_by(CaseTaskRecord.assignee_id).order_by(func.count().desc())).first()


ROUTES: dict[str, Callable[[Session, dict], object]] = {
    "GET /cases, a province": lambda s, v: queries.list_cases(
        s, scope=queries.Scope(region_prefix="37"), filters=queries.CaseFilters(region_prefix="37")),
    "GET /cases, a deep page": lambda s, v: queries.list_cases(
        s, scope=queries.Scope(region_prefix="37"), filters=queries.CaseFilters(), cursor=v["cursor"]),
    "GET /cases?q=<phone>": lambda s, v: queries.list_cases(
        s, scope=queries.Scope(region_prefix="37"), filters=queries.CaseFilters(text=v["phone"])),
    "GET /cases?phone=": lambda s, v: queries.list_cases(
        s, scope=queries.Scope(region_prefix="37"), filters=queries.CaseFilters(caller_phone=v["e164"])),
    "GET /cases?stage=mediation&breached=true": lambda s, v: queries.list_cases(
        s, scope=queries.Scope(region_prefix="37"), filters=queries.CaseFilters(stage="mediation", breached=True)),
    "GET /me/tasks, a mediator": lambda s, v: queries.open_tasks(s, assignee_id=v["mediator"]),
    "GET /me/tasks, a county's operators": lambda s, v: queries.open_tasks(s, role="operator",
                                                                          region_prefix="370211"),
    "GET /me/tasks, a city's supervisors": lambda s, v: queries.open_tasks(s, role="supervisor",
                                                                          region_prefix="3702"),
    "GET /supervision/breaches": lambda s, v: reports.breached_clocks(s, region_prefix="37"),
    "GET /supervision/breaches?include_ended": lambda s, v: reports.breached_clocks(
        s, region_prefix="37", include_ended=True),
    "GET /supervision/at-risk?within_hours=240": lambda s, v: reports.at_risk_clocks(
        s, now=NOW, within=timedelta(hours=240), region_prefix="37"),
    "GET /supervision/compliance, a year by month": lambda s, v: reports.compliance(
        s, start=date(2026, 1, 1), end=date(2026, 12, 1), region_prefix="37"),
    "GET /supervision/compliance, weeks": lambda s, v: reports.compliance(
        s, start=date(2026, 1, 1), end=date(2026, 12, 1), period="week", group_by_region_level=4),
}


def test_the_text_search_is_served_by_the_bigram_index(seeded_once: Engine, statements: list) -> None:
    """A caller's name or a text of the description: found on both databases, a name (held by a few
    of the 2,000 cases: more than the listing walk reads) through the bigram index of migration 0010,
    and no query of the search reads `cases` whole. Tests of the search itself: tests/test_text_search.py."""
    with Session(seeded_once) as session:
        name, words = session.exec(select(CaseRecord.caller_name, CaseRecord.description)
                                   .order_by(CaseRecord.case_id).offset(321)).first()
        texts = {"name": name, "short name": name[:2], "words": words[:4]}
        ran = {}
        for label, text in texts.items():
            statements.clear()
            ran[label] = (queries.list_cases(session, scope=queries.Scope(region_prefix="37"),
                                             filters=queries.CaseFilters(text=text), limit=100), list(statements))
    assert ran["name"][0].items and all(name in c.caller_name for c in ran["name"][0].items)
    assert ran["short name"][0].items and all(name[:2] in c.caller_name + c.description
                                              for c in ran["short name"][0].items)
    assert ran["words"][0].items and all(texts["words"] in c.description for c in ran["words"][0].items)
    index = "case_text" if seeded_once.dialect.name == "sqlite" else "ix_cases_text_bigrams"
    for label, (_, captured) in ran.items():
        plans = _plans(seeded_once, captured)
        for plan in plans:
            assert not _full_scans(seeded_once, plan), f"{label}: {plan}"
        if label == "name":
            assert index in plans[-1], plans[-1]
    if seeded_once.dialect.name == "postgresql":
        with seeded_once.connect() as conn:
            indexes = {row[0] for row in conn.exec_driver_sql(
                "SELECT indexname FROM pg_indexes WHERE tablename = 'cases' AND indexdef LIKE '%%USING gin%%'")}
        assert indexes == {"ix_cases_text_bigrams"}  # 0009's trigram indexes are gone with 0010


@pytest.mark.parametrize("route", list(ROUTES))
def test_the_queries_are_served_by_indexes(seeded_once: Engine, statements: list, route: str) -> None:
    with Session(seeded_once) as session:
        first = session.exec(select(CaseRecord).order_by(CaseRecord.opened_at.desc(), CaseRecord.case_id.desc())
                             .offset(500)).first()
        e164 = _phone_of_a_case(seeded_once)
        values = {"cursor": queries.encode_cursor(first), "phone": e164.removeprefix("+86")[:8], "e164": e164,
                  "mediator": _busiest_mediator(seeded_once)}
        statements.clear()
        result = ROUTES[route](session, values)
    assert result is not None
    assert statements, "no SQL captured"
    if route.startswith("GET /cases?q=") or route.startswith("GET /cases?phone="):
        assert result.items and all(c.caller_phone == e164 for c in result.items)
    if "compliance" in route:
        assert all("clocks" not in statement for statement, _ in statements)  # the counters, not the clocks
    ran = list(statements)
    for (statement, _), plan in zip(ran, _plans(seeded_once, ran), strict=True):
        assert not _full_scans(seeded_once, plan), f"{route}: full scan in\n{plan}\nfor\n{statement}"


LISTING_FILTERS = {  # a filter of the listing, and the index that walks its cases in the listing's order
    "dispute_type": ("ix_cases_dispute_type_opened_at", {"dispute_type": "medical"}),
    "phase": ("ix_cases_phase_opened_at", {"phase": "escalation"}),
    "category": ("ix_cases_category_opened_at", {"category": "complaint"}),
    "urgency": ("ix_cases_urgency_opened_at", {"urgency": "emergency"}),
    "breached": ("ix_cases_breached_opened_at", {"breached": True}),
    "county": ("ix_cases_region_code_opened_at", {"region_prefix": "370211"}),
}


@pytest.mark.parametrize("kind", list(LISTING_FILTERS))
def test_a_filtered_listing_walks_only_its_own_cases_in_order(seeded_once: Engine, statements: list, kind: str,
                                                              monkeypatch: pytest.MonkeyPatch) -> None:
    """Migration 0011: a listing filtered by a dispute type (a phase, a category, an urgency,
    breached or not, a county) with a common text that few of its cases hold is read from that
    filter's own index, already newest first; before, SQLite walked every case of the province in
    the listing's order (40-70 ms at 100,000 cases) and PostgreSQL's generic plans could too. The
    answer is the plain query's. (At 2,000 cases no text is common: the thresholds are lowered.)"""
    index, filters = LISTING_FILTERS[kind]
    monkeypatch.setattr(queries, "TEXT_CANDIDATES", 0)  # SQLite: too many candidates, so the walk
    monkeypatch.setattr(queries, "TEXT_FEW", -1)  # PostgreSQL: the listing's walk first
    with Session(seeded_once) as session:
        text = session.exec(select(CaseRecord.description).order_by(CaseRecord.case_id).offset(7)).first()[:2]
        statements.clear()
        page = queries.list_cases(session, scope=queries.Scope(region_prefix="37"),
                                  filters=queries.CaseFilters(text=text, **filters), limit=20)
        ran = list(statements)
        conditions = [getattr(CaseRecord, k) == v for k, v in filters.items() if k != "region_prefix"]
        if "region_prefix" in filters:
            conditions.append(CaseRecord.region_code == filters["region_prefix"])
        expected = [c.case_id for c in session.exec(select(CaseRecord).where(*conditions).order_by(
            CaseRecord.opened_at.desc(), CaseRecord.case_id.desc())) if text in c.description + c.caller_name][:20]
    assert [c.case_id for c in page.items] == expected
    listing = [plan for (statement, _), plan in zip(ran, _plans(seeded_once, ran), strict=True)
               if "FROM cases" in statement and "ORDER BY cases.opened_at DESC" in statement]
    assert listing, ran
    for plan in listing:
        assert index in plan, plan
        if seeded_once.dialect.name == "sqlite":  # (PostgreSQL rightly sorts the few of 2,000 cases)
            assert "TEMP B-TREE" not in plan, plan  # no sort: the index's order


def _sqlite_indexes(engine: Engine) -> set[tuple[str, str | None]]:
    """The indexes, and the triggers (the text search index's are dropped for the load too)."""
    with engine.connect() as conn:
        return set(conn.exec_driver_sql("SELECT name, sql FROM sqlite_master WHERE type IN ('index', 'trigger')").all())


def test_the_sqlite_seed_puts_back_its_indexes_and_connection_settings(
        sqlite_engine: Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    """On SQLite the seeder drops the loaded tables' indexes and loosens its connection's settings
    for the load: the indexes come back as they were, the pooled connection gets its settings back,
    whether the seed succeeds or fails half-way."""
    import disputeflow.db.seed as seeding

    indexes = _sqlite_indexes(sqlite_engine)
    assert any(name == "ix_clocks_open_unbreached_due" for name, _ in indexes)
    assert any(name == "case_text_insert" for name, _ in indexes)

    def settings() -> tuple[int, int]:
        with sqlite_engine.connect() as conn:
            return (conn.exec_driver_sql("PRAGMA synchronous").scalar_one(),
                    conn.exec_driver_sql("PRAGMA cache_size").scalar_one())

    normal = settings()
    assert normal[0] == 1  # NORMAL, as engine.py sets it
    written = 0
    real_write = seeding._write

    def fail_on_the_second_slice(conn, dialect, chunk):
        nonlocal written
        written += 1
        if written == 2:
            raise RuntimeError("the disk is full")
        real_write(conn, dialect, chunk)

    monkeypatch.setattr(seeding, "_write", fail_on_the_second_slice)
    with pytest.raises(RuntimeError, match="disk is full"):
        seed(sqlite_engine, cases=300, now=NOW, seed=7, batch_size=100, workers=0)
    assert _sqlite_indexes(sqlite_engine) == indexes
    assert settings() == normal
    with Session(sqlite_engine) as session:  # the first slice was rolled back with the rest
        assert session.exec(select(func.count()).select_from(CaseRecord)).one() == 0

    monkeypatch.setattr(seeding, "_write", real_write)
    assert seed(sqlite_engine, cases=300, now=NOW, seed=7, batch_size=100, workers=0).cases == 300
    assert _sqlite_indexes(sqlite_engine) == indexes
    assert settings() == normal
    with Session(sqlite_engine) as session:
        assert session.exec(select(func.count()).select_from(CaseRecord)).one() == 300
        # the text search index, built at the end of the load: a row for every case
        assert session.exec(text("SELECT count(*) FROM case_text_rows JOIN cases USING (case_id)")).one()[0] == 300
        _all_compliance_agrees(session)
