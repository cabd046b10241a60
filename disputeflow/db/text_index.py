"""The index of the text search of cases: the two-character pieces (bigrams) of the caller's name and
of the description, on SQLite and on PostgreSQL (migration 0010).

`?q=<text>` finds the cases whose description or caller's name holds the text (`ILIKE '%text%'`,
`queries._case_conditions`). Names are two to four Chinese characters, and a common search is two
characters (a name, or a word): trigram indexes cannot serve that. A text of two characters or
more holds every bigram of itself, so the cases that hold it are among the cases that hold all its
bigrams: the index gives those candidates, and the query keeps its own `ILIKE` to check each of
them. The answer is therefore exactly the `ILIKE`'s, whatever the index finds more.

The bigrams are those of the *folded* text, folded the way each database's `ILIKE` folds it:

- SQLite (SQLAlchemy writes `lower(x) LIKE lower(y)`; both `lower` and `LIKE` fold ASCII letters
  only): ASCII letters lowered, in Python (`sqlite_terms`). A contentless FTS5 table `case_text`
  (`detail=none`: the rows of each bigram, no positions, no copy of the text) holds one row per
  case, its terms the case's distinct bigrams, each written as an ASCII token (`_token`). The
  table `case_text_rows` gives each case a stable row number for it (the cases' own rowid changes
  with a VACUUM). Triggers on `cases` keep both on every insert, change of name or description
  (erasure) and delete, whoever writes: the projection, the seeder, erasure, a migration. They call
  `disputeflow_text_terms(name, description)`, a function every connection of `make_engine`
  registers; a connection without it (the `sqlite3` shell) cannot write `cases`.
- PostgreSQL (`ILIKE` in a UTF-8 database is `lower(x) LIKE lower(y)` with PostgreSQL's `lower`):
  the SQL function `disputeflow_bigrams(text)` (the distinct bigrams of `lower(text)`) and a GIN
  index `ix_cases_text_bigrams` on `disputeflow_bigrams(caller_name) || disputeflow_bigrams(description)`.
  PostgreSQL keeps it on every write; no extension is needed.

Deleting a row of a contentless FTS5 table requires the terms it was written with, so the terms of a
text must never change while the index holds them: a change to `sqlite_terms` (or `_token`) needs a
migration that rebuilds the index (`rebuild_sqlite`).
"""

from __future__ import annotations

from functools import lru_cache

from sqlalchemy import column, func, literal_column, select, table, text
from sqlalchemy.engine import Connection
from sqlalchemy.sql import ColumnElement, Select

from disputeflow.db.models import CaseRecord

SQLITE_TERMS_FUNCTION = "disputeflow_text_terms"
PG_BIGRAMS_FUNCTION = "disputeflow_bigrams"
INDEX = "ix_cases_text_bigrams"  # PostgreSQL
FTS_TABLE, ROWS_TABLE = "case_text", "case_text_rows"  # SQLite (with the FTS5 table's own tables:
# models.DATABASE_ONLY_TABLES)
MAX_QUERY_TERMS = 12  # a long search text: 12 of its bigrams narrow the candidates enough; ILIKE checks

_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")


def bigrams(text_: str) -> list[str]:
    """The distinct two-character pieces of `text_` with its ASCII letters lowered (SQLite's fold),
    in the order they first occur."""
    folded = text_.translate(_ASCII_LOWER)
    return list(dict.fromkeys(folded[i:i + 2] for i in range(len(folded) - 1)))


@lru_cache(maxsize=1 << 16)  # the same pairs again and again: a third of the time of `sqlite_terms`
def _token(pair: str) -> str:
    """A bigram as a token FTS5's `ascii` tokenizer keeps whole: the two code points in hexadecimal,
    an `x` between them (any character at all, spaces and punctuation included)."""
    return f"{ord(pair[0]):x}x{ord(pair[1]):x}"


def sqlite_terms(name: str | None, description: str | None) -> str:
    """The terms `case_text` holds for a case (what the triggers write and delete)."""
    pairs = dict.fromkeys(bigrams(name or ""))
    pairs.update(dict.fromkeys(bigrams(description or "")))
    return " ".join(_token(p) for p in pairs)


def searchable(text_: str) -> bool:
    """Whether the index can narrow a search for `text_` (two characters or more)."""
    return len(text_) >= 2


def sqlite_match(text_: str) -> str:
    """The FTS5 query for the cases that hold every bigram of `text_` (at most MAX_QUERY_TERMS of them)."""
    return " ".join(f'"{_token(p)}"' for p in bigrams(text_)[:MAX_QUERY_TERMS])


def sqlite_matches(text_: str) -> Select:
    """SQLite: SELECT rowid of `case_text` for the cases holding every bigram of `text_` (count them)."""
    fts = table(FTS_TABLE, column("rowid"))
    return select(fts.c.rowid).where(literal_column(FTS_TABLE).op("MATCH")(sqlite_match(text_)))


def sqlite_candidates(text_: str) -> Select:
    """SQLite: SELECT case_id of the cases holding every bigram of `text_` (a searchable text): a
    superset of the cases whose description or name holds `text_`, read from the index."""
    rows = table(ROWS_TABLE, column("row"), column("case_id"))
    return select(rows.c.case_id).where(rows.c.row.in_(sqlite_matches(text_)))


def pg_holds_bigrams(text_: str) -> ColumnElement[bool]:
    """PostgreSQL: the condition, served by `ix_cases_text_bigrams`, that a case holds every bigram
    of `text_` (a searchable text): true of every case whose description or name holds `text_`."""
    c = CaseRecord.__table__.c
    pieces = getattr(func, PG_BIGRAMS_FUNCTION)
    held = pieces(c.caller_name).op("||")(pieces(c.description))  # the index's expression, as written there
    return held.op("@>")(pieces(text_))


# -- Schema (migration 0010) ----------------------------------------------------------------------

SQLITE_DDL = (
    f"CREATE TABLE {ROWS_TABLE} (row INTEGER PRIMARY KEY, case_id VARCHAR(40) NOT NULL UNIQUE)",
    f"CREATE VIRTUAL TABLE {FTS_TABLE} USING fts5(terms, content='', detail=none, columnsize=0, tokenize='ascii')",
    f"""CREATE TRIGGER case_text_insert AFTER INSERT ON cases BEGIN
    INSERT INTO {ROWS_TABLE} (case_id) VALUES (new.case_id);
    INSERT INTO {FTS_TABLE} (rowid, terms) VALUES (
        (SELECT row FROM {ROWS_TABLE} WHERE case_id = new.case_id),
        {SQLITE_TERMS_FUNCTION}(new.caller_name, new.description));
END""",
    f"""CREATE TRIGGER case_text_update AFTER UPDATE OF caller_name, description ON cases
WHEN old.caller_name IS NOT new.caller_name OR old.description IS NOT new.description BEGIN
    INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, terms) VALUES ('delete',
        (SELECT row FROM {ROWS_TABLE} WHERE case_id = old.case_id),
        {SQLITE_TERMS_FUNCTION}(old.caller_name, old.description));
    INSERT INTO {FTS_TABLE} (rowid, terms) VALUES (
        (SELECT row FROM {ROWS_TABLE} WHERE case_id = new.case_id),
        {SQLITE_TERMS_FUNCTION}(new.caller_name, new.description));
END""",
    f"""CREATE TRIGGER case_text_delete AFTER DELETE ON cases BEGIN
    INSERT INTO {FTS_TABLE} ({FTS_TABLE}, rowid, terms) VALUES ('delete',
        (SELECT row FROM {ROWS_TABLE} WHERE case_id = old.case_id),
        {SQLITE_TERMS_FUNCTION}(old.caller_name, old.description));
    DELETE FROM {ROWS_TABLE} WHERE case_id = old.case_id;
END""",
)
SQLITE_DROP = (
    "DROP TRIGGER IF EXISTS case_text_insert", "DROP TRIGGER IF EXISTS case_text_update",
    "DROP TRIGGER IF EXISTS case_text_delete", f"DROP TABLE IF EXISTS {FTS_TABLE}", f"DROP TABLE IF EXISTS {ROWS_TABLE}",
)

# lower() once per text (a subquery), then every two-character piece of it. IMMUTABLE: an index may
# use it (PostgreSQL's lower() is immutable for a database's fixed collation, as pg_trgm assumes too).
PG_DDL = (
    f"""CREATE OR REPLACE FUNCTION {PG_BIGRAMS_FUNCTION}(text) RETURNS text[]
LANGUAGE sql IMMUTABLE STRICT PARALLEL SAFE AS $$
    SELECT coalesce(array_agg(DISTINCT substr(t, i, 2)), '{{}}')
    FROM (SELECT lower($1) AS t) AS folded, generate_series(1, char_length(t) - 1) AS i
$$""",
    (f"CREATE INDEX {INDEX} ON cases USING gin "
     f"(({PG_BIGRAMS_FUNCTION}(caller_name) || {PG_BIGRAMS_FUNCTION}(description)))"),
)
PG_DROP = (f"DROP INDEX IF EXISTS {INDEX}", f"DROP FUNCTION IF EXISTS {PG_BIGRAMS_FUNCTION}(text)")


def rebuild_sqlite(conn: Connection) -> int:
    """Fill `case_text_rows` and `case_text` from `cases` (both emptied first), in the caller's
    transaction; returns how many cases. The connection must have the terms function (`make_engine`)."""
    conn.execute(text(f"INSERT INTO {FTS_TABLE} ({FTS_TABLE}) VALUES ('delete-all')"))
    conn.execute(text(f"DELETE FROM {ROWS_TABLE}"))
    conn.execute(text(f"INSERT INTO {ROWS_TABLE} (case_id) SELECT case_id FROM cases ORDER BY opened_at, case_id"))
    return conn.execute(text(
        f"INSERT INTO {FTS_TABLE} (rowid, terms) SELECT r.row, {SQLITE_TERMS_FUNCTION}(c.caller_name, c.description) "
        f"FROM {ROWS_TABLE} AS r JOIN cases AS c ON c.case_id = r.case_id")).rowcount
