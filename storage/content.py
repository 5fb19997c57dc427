"""Registered content and its ranked full-text search: FTS5 with bm25 on SQLite, the
generated `search` tsvector (GIN index) with ts_rank on PostgreSQL (both from migration 0005).

User words never become query syntax: they are split into plain word tokens here, and each
is quoted for FTS5 or joined with `or` for `websearch_to_tsquery`, which never raises on
its input. The SQL text is fixed; the words travel as bound parameters.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from datetime import datetime

from sqlalchemy import text
from sqlmodel import Session, col, func, select

from storage.models import ContentItem

STAGES = ("awareness", "consideration", "decision", "retention")
MAX_TERMS = 24

# Words too common to say anything about a piece of content. PostgreSQL's `english`
# configuration drops these itself; FTS5 has no stop words, so they are dropped here.
STOP_WORDS = frozenset(
    """a about an and any are as at be but by can could did do does for from had has have
    how i if in into is it its me my near no not of on or our so than that the their them
    then there these they this to too us was we what when where which who why will with
    would you your""".split()  # noqa: SIM905 (a word list reads best as words)
)

_WORD = re.compile(r"\w+", re.UNICODE)

# bm25 weights, in the FTS table's column order: title, description, tags, stage.
_BM25 = "bm25(content_fts, 10.0, 2.0, 5.0, 1.0)"
_SQLITE_SEARCH = text(
    f"SELECT content_fts.rowid AS id FROM content_fts WHERE content_fts MATCH :query "
    f"ORDER BY {_BM25}, content_fts.rowid DESC LIMIT :limit"
)
_PG_SEARCH = text(
    "SELECT content.id FROM content, websearch_to_tsquery('english', :query) AS query "
    "WHERE content.search @@ query "
    "ORDER BY ts_rank(content.search, query) DESC, content.id DESC LIMIT :limit"
)


def terms(words: str) -> list[str]:
    """The distinct search words of `words`, lower-cased, without punctuation or stop words
    (so `"`, `*`, `:`, `-`, parentheses or `AND` can never act as query syntax)."""
    found: list[str] = []
    for word in _WORD.findall(words.lower()):
        word = word.strip("_")
        if word and word not in STOP_WORDS and word not in found:
            found.append(word)
    return found[:MAX_TERMS]


def fts5_query(words: Sequence[str]) -> str:
    """An FTS5 query matching any of the words, each a quoted string (never an operator)."""
    return " OR ".join('"' + w.replace('"', '""') + '"' for w in words)


def search(session: Session, *, words: str, limit: int = 5) -> list[ContentItem]:
    """Content matching any of `words`, best first: a match in the title counts most, then
    tags, then the description, then the funnel stage. Words that look like a link (a
    pasted URL or domain) first find the items whose link contains them."""
    ids = _link_matches(session, words.strip(), limit)
    found = terms(words)
    if found:
        if session.get_bind().dialect.name == "postgresql":
            statement, query = _PG_SEARCH, " or ".join(found)
        else:
            statement, query = _SQLITE_SEARCH, fts5_query(found)
        rows = session.connection().execute(statement, {"query": query, "limit": limit})
        ids += [row[0] for row in rows if row[0] not in ids]
    return _in_order(session, ids[:limit])


def _link_matches(session: Session, words: str, limit: int) -> list[int]:
    looks_like_link = ("." in words or "/" in words) and len(words) >= 4
    if not looks_like_link or " " in words or not words.isprintable():
        return []
    pattern = "%" + re.sub(r"([\\%_])", r"\\\1", words.lower()) + "%"
    rows = session.exec(
        select(ContentItem.id)
        .where(func.lower(ContentItem.link).like(pattern, escape="\\"))
        .order_by(col(ContentItem.id).desc())
        .limit(limit)
    ).all()
    return [row for row in rows if row is not None]


def _in_order(session: Session, ids: Sequence[int]) -> list[ContentItem]:
    if not ids:
        return []
    rows = session.exec(select(ContentItem).where(col(ContentItem.id).in_(list(ids)))).all()
    by_id = {row.id: row for row in rows}
    return [by_id[i] for i in ids if i in by_id]


def newest(session: Session, *, limit: int = 5) -> Sequence[ContentItem]:
    return session.exec(
        select(ContentItem)
        .order_by(col(ContentItem.created_at).desc(), col(ContentItem.id).desc())
        .limit(limit)
    ).all()


def count(session: Session) -> int:
    return session.exec(select(func.count()).select_from(ContentItem)).one()


def get(session: Session, *, content_id: int) -> ContentItem | None:
    return session.get(ContentItem, content_id)


def by_link(session: Session, *, link: str) -> ContentItem | None:
    """The item registered with this (normalised) link, if any."""
    return session.exec(select(ContentItem).where(ContentItem.link == link)).first()


def add(
    session: Session,
    *,
    title: str,
    link: str,
    description: str,
    tags: Sequence[str],
    stage: str,
    added_by: int | None,
    now: datetime,
) -> ContentItem:
    """Register an item; the triggers (SQLite) or the generated column (PostgreSQL) index it."""
    item = ContentItem(
        title=title,
        link=link,
        description=description,
        tags=", ".join(tags),
        stage=stage,
        added_by=added_by,
        created_at=now,
    )
    session.add(item)
    session.flush()
    return item
