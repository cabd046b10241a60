"""The text search of cases (`?q=`, `POST /cases/search {q}`) through the bigram index of migration
0010, on SQLite and PostgreSQL: it answers exactly what the plain `ILIKE '%text%'` on the description
or the caller's name answers (same cases, same order, page after page, with scope and filters), a
rare text is found without reading every case, and the index follows every write: the seeder, the
projection, erasure, deletes and the migration of an existing database."""

from __future__ import annotations

import re
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import delete, event, or_, text, update
from sqlalchemy.engine import Engine
from sqlmodel import Session, select

from disputeflow.db import queries, text_index
from disputeflow.db.cases import apply_projection
from disputeflow.db.engine import write_session
from disputeflow.db.erasure import ErasureReason, erase_case
from disputeflow.db.models import CaseRecord
from disputeflow.db.queries import LIKE_ESCAPE, like_pattern
from disputeflow.db.seed import seed
from disputeflow.domain.calendar import SHANGHAI
from tests.conftest import schema_database

NOW = datetime(2026, 12, 1, 15, 0, tzinfo=SHANGHAI)
CASES = 1500
AT = datetime(2026, 11, 20, 9, 0, tzinfo=UTC)

# Written beside the seeded cases: Latin letters in both cases, LIKE's wildcards, spaces,
# characters outside the BMP, letters whose case only PostgreSQL folds, one shared opened_at (the
# cursor's tie on case_id), another region.
CRAFTED = [
    ("ZX-0001", "370102", "Zhang Wei", "Owes 50% of the WAGES_due; 工资 unpaid"),
    ("ZX-0002", "370102", "zhang WEI", "wages due\tsince May"),
    ("ZX-0003", "370203", "O'Brien", "a_b 100% 邻里 dispute 😀😁 over a fence"),
    ("ZX-0004", "370203", "Ärger Straße", "ÄRGER with the landlord, straße blocked"),
    ("ZX-0005", "110101", "曹丽", "Beijing case: 曹丽 rents out 邻里 rooms"),
    ("ZX-0006", "370102", "欧阳娜娜", "x"),
    ("ZX-0007", "370102", "李", "芳兰芳兰"),
]


def _crafted_rows() -> list[dict]:
    rows = []
    for i, (case_id, region, name, description) in enumerate(CRAFTED):
        opened = AT if i < 4 else AT - timedelta(days=i)
        rows.append({
            "case_id": case_id, "workflow_id": f"case-{case_id}", "stage": "closed" if i % 2 else "mediation",
            "phase": "closed" if i % 2 else "handling", "region_code": region, "channel": "hotline",
            "category": "dispute", "dispute_type": "labour_wages", "urgency": "normal", "special_groups": [],
            "caller_name": name, "caller_phone": f"+861380013{i:04d}", "caller_phone_digits": f"1380013{i:04d}",
            "description": description, "mediator_id": None, "lawyer_id": None, "opened_at": opened,
            "updated_at": opened, "closed_at": opened + timedelta(days=1) if i % 2 else None,
            "final_outcome": None, "satisfaction": None, "policy_version": "test", "breached": False,
            "event_count": 0,
        })
    return rows


@pytest.fixture(scope="module", params=["sqlite", "postgresql"])
def searched(request: pytest.FixtureRequest, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Engine]:
    """Seeded cases and the crafted ones, on each database; tests that write restore what they change."""
    with schema_database(request, tmp_path_factory, request.param) as engine:
        seed(engine, cases=CASES, now=NOW, seed=11, batch_size=500, workers=0)
        with engine.begin() as conn:
            conn.execute(CaseRecord.__table__.insert(), _crafted_rows())
        yield engine


def _plain_ilike(session: Session, search: str, *, region: str | None = None, stage: str | None = None,
                 dispute_type: str | None = None) -> list[str]:
    """The reference: every case holding `search`, by the plain ILIKE, newest first."""
    pattern = like_pattern(search)
    conditions = [or_(CaseRecord.description.ilike(pattern, escape=LIKE_ESCAPE),
                      CaseRecord.caller_name.ilike(pattern, escape=LIKE_ESCAPE))]
    if region:
        conditions.append(CaseRecord.region_code.startswith(region))
    if stage:
        conditions.append(CaseRecord.stage == stage)
    if dispute_type:
        conditions.append(CaseRecord.dispute_type == dispute_type)
    return list(session.exec(select(CaseRecord.case_id).where(*conditions)
                             .order_by(CaseRecord.opened_at.desc(), CaseRecord.case_id.desc())))


def _all_pages(session: Session, search: str, *, region: str | None = None, stage: str | None = None,
               dispute_type: str | None = None, limit: int = 7) -> list[str]:
    found: list[str] = []
    cursor = None
    for _ in range(CASES):
        page = queries.list_cases(session, scope=queries.Scope(region_prefix=region),
                                  filters=queries.CaseFilters(text=search, stage=stage, dispute_type=dispute_type),
                                  cursor=cursor, limit=limit)
        found += [c.case_id for c in page.items]
        if page.next_cursor is None:
            return found
        cursor = page.next_cursor
    raise AssertionError("the pages never ended")


def _texts(engine: Engine) -> list[str]:
    """Names of 2 and 3 characters, pieces of descriptions, rare and absent texts, Latin ones in
    other cases, LIKE's wildcards, one character, a piece of the erased mark."""
    with Session(engine) as session:
        names = list(session.exec(select(CaseRecord.caller_name).order_by(CaseRecord.case_id).limit(300)))
        description = session.exec(select(CaseRecord.description).order_by(CaseRecord.case_id).offset(40)).first()
    two = next(n for n in names if len(n) == 2)
    three = next(n for n in names if len(n) == 3)
    return [two, three, three[1:], description[:2], description[3:5], description[2:9], "芳兰", "仲裁", "仲裁委",
            "工资", "zhang wei", "ZHANG", "wages", "WaGeS_dUe", "50%", "0%", "a_b", "_", "%", "😀😁", "'b",
            "ärger", "ÄRGER", "STRASSE", "straße", "s\tsi", "工", "丽", "Ke", "er"]


@pytest.mark.parametrize(("walk", "few", "candidates"), [
    (queries.TEXT_WALK, queries.TEXT_FEW, queries.TEXT_CANDIDATES), (3, 10**6, 10**6), (3, -1, 10**6), (10**6, -1, 3)],
    ids=["as-set", "to-the-index", "past-a-short-walk-to-the-index", "walking"])
def test_the_search_answers_exactly_what_the_plain_ilike_answers(
        searched: Engine, walk: int, few: int, candidates: int, monkeypatch: pytest.MonkeyPatch) -> None:
    """Every text, with and without scope and filters, all pages: the same cases in the same order.
    As set, a common text is found by walking the listing, a rare one through the index; then
    every search through the index at once; after a walk of 3 cases (PostgreSQL); by walking."""
    monkeypatch.setattr(queries, "TEXT_WALK", walk)  # PostgreSQL's walk, for texts more than TEXT_FEW hold
    monkeypatch.setattr(queries, "TEXT_FEW", few)
    monkeypatch.setattr(queries, "TEXT_CANDIDATES", candidates)  # SQLite's choice
    checked = 0
    with Session(searched) as session:
        for search in _texts(searched):
            for filters in ({}, {"region": "37"}, {"region": "3702", "stage": "closed"},
                            {"dispute_type": "neighbours"}):
                expected = _plain_ilike(session, search, **filters)
                assert _all_pages(session, search, **filters) == expected, (search, filters)
                checked += bool(expected)
    assert checked > 60  # most of them find something


def _index_holds(engine: Engine, search: str) -> set[str]:
    """The cases the index gives for `search`, read from the index alone."""
    with Session(engine) as session:
        if engine.dialect.name == "sqlite":
            return set(session.execute(text_index.sqlite_candidates(search)).scalars())
        return set(session.execute(select(CaseRecord.case_id).where(text_index.pg_holds_bigrams(search))).scalars())


def _holding_every_bigram(engine: Engine, search: str) -> set[str]:
    """The same, computed from the cases' own text (in the database's fold)."""
    fold = (lambda s: s) if engine.dialect.name == "sqlite" else str.lower
    wanted = set(text_index.bigrams(fold(search)))
    with Session(engine) as session:
        rows = session.exec(select(CaseRecord.case_id, CaseRecord.caller_name, CaseRecord.description)).all()
    return {case_id for case_id, name, description in rows
            if wanted <= set(text_index.bigrams(fold(name))) | set(text_index.bigrams(fold(description)))}


def test_the_index_holds_every_bigram_of_every_case_as_the_seeder_wrote_them(searched: Engine) -> None:
    for search in ["芳兰", "工资", "zh", "Ke", "😀😁", "er", *_texts(searched)[:6]]:
        assert _index_holds(searched, search) == _holding_every_bigram(searched, search), search


def _plans(engine: Engine, statements: list[tuple[str, object]]) -> list[str]:
    with engine.connect() as conn:
        if engine.dialect.name != "sqlite":
            conn.exec_driver_sql("SET enable_seqscan = off")  # small tables: can an index serve?
        prefix = "EXPLAIN QUERY PLAN " if engine.dialect.name == "sqlite" else "EXPLAIN "
        return ["\n".join(str(row[-1] if engine.dialect.name == "sqlite" else row[0])
                          for row in conn.exec_driver_sql(prefix + statement, parameters))
                for statement, parameters in statements]


@pytest.mark.parametrize("search", ["仲裁", "仲裁委", "芳兰", "zhang wei"])
def test_a_rare_text_is_found_from_the_index_not_by_reading_the_cases(searched: Engine, search: str) -> None:
    """More cases than the walk reads, a text few or none hold: the last query starts from the index,
    and no query reads `cases` whole or walks more of the listing than the walk's limit."""
    statements: list[tuple[str, object]] = []

    def capture(conn, cursor, statement, parameters, context, executemany) -> None:
        if statement.lstrip().upper().startswith(("SELECT", "WITH")):
            statements.append((statement, parameters))

    event.listen(searched, "before_cursor_execute", capture)
    try:
        with Session(searched) as session:
            page = queries.list_cases(session, scope=queries.Scope(region_prefix="37"),
                                      filters=queries.CaseFilters(text=search))
    finally:
        event.remove(searched, "before_cursor_execute", capture)
    with Session(searched) as session:
        expected = _plain_ilike(session, search, region="37")
    assert [c.case_id for c in page.items] == expected[:50]
    plans = _plans(searched, statements)
    last = plans[-1]
    if searched.dialect.name == "sqlite":
        assert len(statements) == 2  # the index's count, then its cases
        assert "cases" not in statements[0][0].replace("case_text", "")  # counted in the index alone
        assert "SCAN case_text VIRTUAL TABLE" in last and "SEARCH cases USING INDEX sqlite_autoindex_cases_1" in last
        assert not any(re.search(r"\bSCAN cases\b", plan) for plan in plans), plans
    else:
        assert len(statements) == 2  # the index's count (a few cases), then its cases
        assert all("Bitmap Index Scan on ix_cases_text_bigrams" in plan for plan in plans), plans
        assert not any("Seq Scan on cases" in plan for plan in plans), plans


def test_erasure_takes_the_callers_name_and_story_out_of_the_index(searched: Engine) -> None:
    with Session(searched) as session:
        case = session.exec(select(CaseRecord).where(CaseRecord.closed_at.is_not(None), CaseRecord.case_id.like("37%"))
                            .order_by(CaseRecord.case_id).offset(5)).first()
        name, story = case.caller_name, case.description
        # a name of this case alone: its own given name's bigram, and the whole name
        assert case.case_id in _index_holds(searched, name)
    with write_session(searched) as session:
        assert erase_case(session, case.case_id, now=NOW, reason=ErasureReason.retention_expired).erased_now
    assert case.case_id not in _index_holds(searched, name)
    assert case.case_id not in _index_holds(searched, story[:4])
    assert case.case_id in _index_holds(searched, "(erased)")
    with Session(searched) as session:
        assert case.case_id not in _all_pages(session, name)
        assert _all_pages(session, name) == _plain_ilike(session, name)
    for search in (name, story[:2], "(erased)", "er"):
        assert _index_holds(searched, search) == _holding_every_bigram(searched, search), search
    _integrity(searched)


def test_changes_and_deletes_of_cases_keep_the_index(searched: Engine) -> None:
    with searched.begin() as conn:
        conn.execute(update(CaseRecord.__table__).where(CaseRecord.case_id == "ZX-0006")
                     .values(caller_name="欧阳芳兰", description="芳兰 again"))
    assert "ZX-0006" in _index_holds(searched, "阳芳兰")
    assert "ZX-0006" not in _index_holds(searched, "娜娜")
    with searched.begin() as conn:
        conn.execute(update(CaseRecord.__table__).where(CaseRecord.case_id == "ZX-0006")
                     .values(caller_name="欧阳娜娜", description="x"))
        conn.execute(update(CaseRecord.__table__).where(CaseRecord.case_id == "ZX-0007").values(stage="closed"))
    assert _index_holds(searched, "娜娜") >= {"ZX-0006"} and "ZX-0006" not in _index_holds(searched, "芳兰")
    row = [r for r in _crafted_rows() if r["case_id"] == "ZX-0007"]
    with searched.begin() as conn:
        conn.execute(delete(CaseRecord.__table__).where(CaseRecord.case_id == "ZX-0007"))
    assert "ZX-0007" not in _index_holds(searched, "芳兰")
    with searched.begin() as conn:
        conn.execute(CaseRecord.__table__.insert(), row)  # as it was
    assert "ZX-0007" in _index_holds(searched, "芳兰芳兰")
    for search in ("芳兰", "娜娜", "阳娜"):
        assert _index_holds(searched, search) == _holding_every_bigram(searched, search), search
    _integrity(searched)


def _integrity(engine: Engine) -> None:
    if engine.dialect.name != "sqlite":
        return
    with engine.begin() as conn:  # FTS5's own check of its index's structure
        conn.execute(text(f"INSERT INTO {text_index.FTS_TABLE} ({text_index.FTS_TABLE}) VALUES ('integrity-check')"))
        cases = conn.execute(text("SELECT count(*) FROM cases")).scalar_one()
        rows = conn.execute(text(f"SELECT count(*) FROM {text_index.ROWS_TABLE} JOIN cases USING (case_id)")).scalar_one()
        assert rows == cases == conn.execute(text(f"SELECT count(*) FROM {text_index.ROWS_TABLE}")).scalar_one()


def test_a_case_the_projection_writes_is_found_by_its_callers_name(engine: Engine) -> None:
    from tests.test_projection import opened_case, projection_of

    state, _ = opened_case()
    state.intake = state.intake.model_copy(update={
        "caller": state.intake.caller.model_copy(update={"name": "司马懿"}),
        "description": "Landlord kept the DEPOSIT of 押金 3000"})
    with write_session(engine) as session:
        apply_projection(session, projection_of(state), now=NOW)
    with Session(engine) as session:
        for search in ("司马", "马懿", "deposit", "押金"):
            assert [c.case_id for c in queries.list_cases(session, scope=queries.Scope(),
                                                          filters=queries.CaseFilters(text=search)).items] \
                == [state.case_id], search
    assert _index_holds(engine, "司马") == {state.case_id}
