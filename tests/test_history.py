"""Run history on real PostgreSQL: recording, listing per user, pruning, and a database that is down."""

from __future__ import annotations

import logging
from datetime import datetime, timedelta, timezone

import pytest
import sqlalchemy as sa

from stackql_inventory.config import get_settings
from stackql_inventory.db import engine as db_engine
from stackql_inventory.services import history, ide_queries
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.history import RunStatus
from stackql_inventory.services.identity import Identity

T0 = datetime(2026, 11, 20, 9, 0, tzinfo=timezone.utc)


def test_record_and_list_newest_first(db):
    history.record("ana", query_text="SELECT 1", provider="aws", status=RunStatus.SUCCESS, row_count=1,
                   elapsed_s=0.25, started_at=T0)
    history.record("ana", query_text="SELECT broken", provider="", status=RunStatus.ERROR,
                   error_message="stackql: syntax error", elapsed_s=0.1, started_at=T0 + timedelta(minutes=1))
    history.record("bob", query_text="SELECT 2", provider="github", status=RunStatus.CANCELLED,
                   started_at=T0 + timedelta(minutes=2))
    mine = history.recent("ana")
    assert [(h.query_text, h.status, h.provider, h.row_count, h.error_message) for h in mine] == [
        ("SELECT broken", "error", "", None, "stackql: syntax error"),
        ("SELECT 1", "success", "aws", 1, ""),
    ]
    assert mine[1].elapsed_s == 0.25 and mine[1].started_at == T0 and mine[1].user == "ana"
    with db.connect() as c:
        assert c.execute(sa.text("SELECT provider FROM stackql_app.query_history WHERE user_name = 'ana' "
                                 "ORDER BY id")).scalars().all() == ["aws", None]


def test_search_limit_and_get(db):
    for i in range(5):
        history.record("ana", query_text=f"SELECT {i} FROM aws.ec2.instances", provider="aws",
                       status=RunStatus.SUCCESS, started_at=T0 + timedelta(seconds=i))
    history.record("ana", query_text="SHOW PROVIDERS -- 100%", provider="", status=RunStatus.SUCCESS,
                   started_at=T0 + timedelta(seconds=9))
    assert len(history.recent("ana", limit=3)) == 3
    assert [h.query_text for h in history.recent("ana", search="100%")] == ["SHOW PROVIDERS -- 100%"]
    assert len(history.recent("ana", search="ec2")) == 5
    entry = history.recent("ana")[0]
    assert history.get("ana", entry.id) == entry
    with pytest.raises(UserFacingError) as e:
        history.get("bob", entry.id)  # someone else's run is not yours to reopen
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_every_run_is_kept_by_default(db):
    for i in range(30):
        history.record("ana", query_text=f"SELECT {i}", provider="", status=RunStatus.SUCCESS,
                       started_at=T0 + timedelta(seconds=i))
    assert len(history.recent("ana", limit=500)) == 30


def test_long_texts_are_cut_and_old_runs_pruned(db, monkeypatch):
    monkeypatch.setenv("STACKQL_INVENTORY_HISTORY_KEEP", "3")
    get_settings.cache_clear()
    history.record("bob", query_text="SELECT bob", provider="", status=RunStatus.SUCCESS, started_at=T0)
    for i in range(5):
        history.record("ana", query_text=f"SELECT {i}" + " " * 200_000, provider="", status=RunStatus.ERROR,
                       error_message="e" * 10_000, started_at=T0 + timedelta(seconds=i))
    kept = history.recent("ana")
    assert [h.query_text.strip() for h in kept] == ["SELECT 4", "SELECT 3", "SELECT 2"]
    assert len(kept[0].query_text) == history.MAX_TEXT and len(kept[0].error_message) == history.MAX_ERROR
    assert len(history.recent("bob")) == 1  # pruning is per user


def test_a_user_is_required(db):
    with pytest.raises(UserFacingError):
        history.record("", query_text="SELECT 1", provider="", status=RunStatus.SUCCESS)


def test_recording_a_run_never_fails_it_when_the_database_is_down(caplog):
    broken = sa.create_engine("postgresql+psycopg2://nobody@127.0.0.1:1/none", connect_args={"connect_timeout": 2})
    db_engine.set_engine(broken)
    try:
        with caplog.at_level(logging.WARNING):
            ide_queries.record(Identity("ana", "Ana", "local"), statement="SELECT 1", provider="",
                               started_at=datetime.now(timezone.utc),
                               failure=ide_queries.QueryFailed(UserFacingError("boom", ErrorKind.QUERY), "SELECT 1"))
    finally:
        db_engine.set_engine(None)
    assert any("run not recorded in history" in r.getMessage() for r in caplog.records)
