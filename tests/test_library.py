"""The query library on real PostgreSQL: save, update in place, duplicate, delete, validation, ownership, roles."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stackql_inventory import config
from stackql_inventory.services import library
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from stackql_inventory.services.identity import Identity
from stackql_inventory.services.library import QueryDraft

ANA = Identity(user="ana@example.com", display_name="Ana", source="proxy")
BOB = Identity(user="bob@example.com", display_name="Bob", source="proxy")
SQL = "SELECT instanceId FROM aws.ec2.instances WHERE region = 'us-east-1'"


def draft(name: str = "EC2 instances", **kw) -> QueryDraft:
    return QueryDraft(name=name, description=kw.get("description", "all of them"),
                      provider=kw.get("provider", "aws"), query_text=kw.get("query_text", SQL))


def rows(db) -> list[tuple]:
    with db.connect() as c:
        return list(c.execute(sa.text(
            "SELECT name, description, provider, query_text, created_by FROM stackql_app.queries ORDER BY id")))


def test_save_and_list(db):
    saved = library.save(ANA, draft(description="  spaced  ", query_text=f"\n{SQL}\n"))
    assert (saved.name, saved.description, saved.provider, saved.query_text, saved.created_by) == (
        "EC2 instances", "spaced", "aws", SQL, ANA.user)
    assert [q.id for q in library.list_queries()] == [saved.id]
    assert library.get(saved.id) == saved
    assert rows(db) == [("EC2 instances", "spaced", "aws", SQL, ANA.user)]


def test_names_are_unique_per_owner_with_a_clear_message(db):
    library.save(ANA, draft())
    with pytest.raises(UserFacingError) as e:
        library.save(ANA, draft(name="  EC2   instances "))  # whitespace is normalised before comparing
    assert e.value.kind is ErrorKind.CONFLICT
    assert "You already have a query named 'EC2 instances'" in e.value.message
    library.save(BOB, draft())  # another owner may use the same name
    assert len(rows(db)) == 2


@pytest.mark.parametrize(("bad", "message"), [
    (dict(name="   "), "Give the query a name"),
    (dict(name="x" * 121), "keep it to 120"),
    (dict(description="d" * 2001), "keep it to 2000"),
    (dict(query_text="  \n "), "The query is empty"),
    (dict(query_text="S" * 100_001), "keeps up to 100,000"),
    (dict(provider="aws; DROP"), "is not a provider name"),
])
def test_invalid_drafts_are_refused_and_nothing_is_written(db, bad, message):
    fields = dict(name="ok", description="", provider="aws", query_text=SQL) | bad
    with pytest.raises(UserFacingError) as e:
        library.save(ANA, QueryDraft(**fields))
    assert e.value.kind is ErrorKind.VALIDATION and message in e.value.message
    assert rows(db) == []


def test_update_in_place(db):
    saved = library.save(ANA, draft())
    before = library.get(saved.id).updated_at
    updated = library.update(ANA, saved.id, draft(name="Renamed", description="", provider="", query_text="SHOW PROVIDERS"))
    assert updated.id == saved.id
    assert (updated.name, updated.description, updated.provider, updated.query_text) == ("Renamed", "", "", "SHOW PROVIDERS")
    assert updated.updated_at >= before
    assert rows(db) == [("Renamed", "", None, "SHOW PROVIDERS", ANA.user)]


def test_update_keeps_names_unique_and_may_keep_its_own(db):
    a = library.save(ANA, draft("A"))
    library.save(ANA, draft("B"))
    library.update(ANA, a.id, draft("A", description="same name is fine"))
    with pytest.raises(UserFacingError) as e:
        library.update(ANA, a.id, draft("B"))
    assert e.value.kind is ErrorKind.CONFLICT
    assert [r[0] for r in rows(db)] == ["A", "B"]


def test_only_the_owner_changes_or_deletes_a_query(db):
    saved = library.save(ANA, draft())
    for call in (lambda: library.update(BOB, saved.id, draft("Mine now")), lambda: library.delete(BOB, saved.id)):
        with pytest.raises(UserFacingError) as e:
            call()
        assert e.value.kind is ErrorKind.PERMISSION and "Duplicate it" in e.value.message
    assert rows(db)[0][0] == "EC2 instances"


def test_duplicate_picks_a_free_name_in_the_actors_library(db):
    saved = library.save(ANA, draft())
    first = library.duplicate(ANA, saved.id)
    second = library.duplicate(ANA, saved.id)
    bobs = library.duplicate(BOB, saved.id)
    assert (first.name, second.name, bobs.name) == ("EC2 instances (copy)", "EC2 instances (copy 2)",
                                                    "EC2 instances (copy)")
    assert (bobs.created_by, bobs.query_text, bobs.provider) == (BOB.user, SQL, "aws")
    assert len(rows(db)) == 4


def test_delete_with_schedules_is_refused(db):
    saved = library.save(ANA, draft())
    with db.begin() as c:
        c.execute(sa.text("INSERT INTO stackql_app.schedules (query_id, cron_expression, target_table) "
                          "VALUES (:q, '0 * * * *', 'ec2_instances')"), {"q": saved.id})
    with pytest.raises(UserFacingError) as e:
        library.delete(ANA, saved.id)
    assert e.value.kind is ErrorKind.CONFLICT and "run by 1 schedule" in e.value.message
    with db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.schedules"))
    library.delete(ANA, saved.id)
    assert rows(db) == []
    with pytest.raises(UserFacingError) as e:
        library.get(saved.id)
    assert e.value.kind is ErrorKind.NOT_FOUND


def test_search_matches_name_description_and_text(db):
    library.save(ANA, draft("Buckets", description="S3", query_text="SELECT name FROM aws.s3.buckets"))
    library.save(ANA, draft("Users 100%", description="okta", query_text="SELECT id FROM okta.user.users"))
    assert [q.name for q in library.list_queries("bucket")] == ["Buckets"]
    assert [q.name for q in library.list_queries("OKTA")] == ["Users 100%"]
    assert [q.name for q in library.list_queries("s3.buckets")] == ["Buckets"]
    assert [q.name for q in library.list_queries("100%")] == ["Users 100%"]  # % is not a wildcard
    assert library.list_queries("_") == []


def test_read_only_users_cannot_write(db, monkeypatch):
    saved = library.save(ANA, draft())
    monkeypatch.setenv("STACKQL_INVENTORY_EDITORS", "ana@example.com")
    config.get_settings.cache_clear()
    try:
        calls = [lambda: library.save(BOB, draft("x")), lambda: library.duplicate(BOB, saved.id),
                 lambda: library.update(BOB, saved.id, draft("x")), lambda: library.delete(BOB, saved.id)]
        for call in calls:
            with pytest.raises(UserFacingError) as e:
                call()
            assert e.value.kind is ErrorKind.PERMISSION and "read-only" in e.value.message
        assert len(rows(db)) == 1
        library.duplicate(ANA, saved.id)
    finally:
        config.get_settings.cache_clear()


def test_a_deleted_query_cannot_be_updated_or_duplicated(db):
    saved = library.save(ANA, draft())
    library.delete(ANA, saved.id)
    for call in (lambda: library.update(ANA, saved.id, draft()), lambda: library.duplicate(ANA, saved.id)):
        with pytest.raises(UserFacingError) as e:
            call()
        assert e.value.kind is ErrorKind.NOT_FOUND
