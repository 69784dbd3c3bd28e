"""Changes between runs on a real PostgreSQL: a three-run SCD2 history table and append tables."""

from __future__ import annotations

import pytest
import sqlalchemy as sa

from stackql_inventory.services import inventory_diff
from stackql_inventory.services.errors import ErrorKind, UserFacingError
from tests.support import inventory as fx


def _summary(diff: inventory_diff.RunDiff) -> list[tuple[str, str, dict[str, tuple]]]:
    """(kind, key, {changed column: (old, new)}) per row."""
    return [(r.kind, r.key, {c.column: (c.old, c.new) for c in r.cells if c.changed}) for r in diff.rows]


@pytest.fixture
def history(db: sa.Engine) -> list[int]:
    with db.begin() as c:
        return fx.seed_history(c)


def test_history_run_one_to_two(history: list[int]) -> None:
    r1, r2, _ = history
    diff = inventory_diff.diff_runs("aws_ec2_history", r1, r2)
    assert diff.mode == "history" and diff.key_columns == ["instance_id"]
    assert diff.columns == ["instance_id", "region", "state", "tags"]
    assert diff.totals == {"added": 1, "removed": 0, "changed": 1}
    assert _summary(diff) == [("added", "i-3", {}), ("changed", "i-2", {"state": ("running", "stopped")})]
    added = diff.rows[0]
    assert [(c.column, c.old, c.new) for c in added.cells] == [
        ("instance_id", None, "i-3"), ("region", None, "us-west-2"), ("state", None, "pending"), ("tags", None, "{}")]


def test_history_run_two_to_three(history: list[int]) -> None:
    _, r2, r3 = history
    diff = inventory_diff.diff_runs("aws_ec2_history", r2, r3)
    assert diff.totals == {"added": 0, "removed": 1, "changed": 2}
    assert _summary(diff) == [
        ("changed", "i-3", {"state": ("pending", "running")}),
        ("changed", "i-4", {"tags": ('{"env": "prod"}', '{"env": "staging"}')}),
        ("removed", "i-2", {}),
    ]
    removed = diff.rows[2]
    assert {c.column: c.old for c in removed.cells}["state"] == "stopped"   # its last version before it vanished


def test_history_first_to_last_and_back(history: list[int]) -> None:
    r1, _, r3 = history
    forward = inventory_diff.diff_runs("aws_ec2_history", r1, r3)
    assert _summary(forward) == [
        ("added", "i-3", {}),
        ("changed", "i-4", {"tags": ('{"env": "prod"}', '{"env": "staging"}')}),
        ("removed", "i-2", {}),
    ]
    backward = inventory_diff.diff_runs("aws_ec2_history", r3, r1)
    assert _summary(backward) == [
        ("added", "i-2", {}),
        ("changed", "i-4", {"tags": ('{"env": "staging"}', '{"env": "prod"}')}),
        ("removed", "i-3", {}),
    ]
    assert not forward.truncated and forward.note == ""


def test_rows_shown_per_kind_are_capped_but_totals_are_exact(history: list[int]) -> None:
    _, r2, r3 = history
    diff = inventory_diff.diff_runs("aws_ec2_history", r2, r3, rows_per_kind=1)
    assert diff.totals == {"added": 0, "removed": 1, "changed": 2}
    assert [r.kind for r in diff.rows] == ["changed", "removed"] and diff.truncated


def test_run_choices_come_from_the_ledger_newest_first(history: list[int]) -> None:
    mode, runs = inventory_diff.run_choices("aws_ec2_history")
    assert mode == "history"
    assert [(r.run_id, r.rows) for r in runs] == [(history[2], 3), (history[1], 4), (history[0], 3)]


def test_run_choices_fall_back_to_the_runs_in_the_table(db: sa.Engine) -> None:
    with db.begin() as c:
        fx.seed_history(c)
        c.execute(sa.text("DELETE FROM stackql_app.runs"))
        c.execute(sa.text("DELETE FROM stackql_app.schedules"))
    mode, runs = inventory_diff.run_choices("aws_ec2_history")
    assert mode == "history"  # from the table's layout
    assert [r.run_id for r in runs] == [3, 2, 1]


def test_append_keyed_on_the_schedules_key_columns(db: sa.Engine) -> None:
    with db.begin() as c:
        r1, r2 = fx.seed_append(c)
    diff = inventory_diff.diff_runs("github_repos", r1, r2)
    assert diff.mode == "append" and diff.columns == ["repo", "stars", "meta"]
    assert _summary(diff) == [("added", "c", {}), ("changed", "a", {"stars": ("1", "2")}), ("removed", "b", {})]


def test_append_without_key_columns_compares_whole_rows(db: sa.Engine) -> None:
    with db.begin() as c:
        r1, r2 = fx.seed_append(c, "repos_nokey", keys=())
    diff = inventory_diff.diff_runs("repos_nokey", r1, r2)
    assert diff.totals == {"added": 2, "removed": 2, "changed": 0}
    assert sorted((r.kind, r.cells[0].new or r.cells[0].old, r.cells[1].new or r.cells[1].old) for r in diff.rows) == [
        ("added", "a", "2"), ("added", "c", "0"), ("removed", "a", "1"), ("removed", "b", "5")]
    assert "whole rows" in diff.note


def test_append_with_duplicate_keys_in_a_run_says_so(db: sa.Engine) -> None:
    with db.begin() as c:
        r1, r2 = fx.seed_append(c)
        fx.insert_rows(c, "github_repos", [{"repo": "a", "stars": 7, "meta": "{}"}], r2)
    diff = inventory_diff.diff_runs("github_repos", r1, r2)
    assert "0 in run" in diff.note and "1 in run" in diff.note
    assert diff.totals["added"] == 1 and diff.totals["removed"] == 1


def test_refusals(db: sa.Engine) -> None:
    with db.begin() as c:
        r1, r2 = fx.seed_append(c)
        qid = fx.add_query(c, "s3")
        fx.add_schedule(c, qid, "replaced", mode="replace")
        fx.create_table(c, "replaced", "bucket text")
        qid = fx.add_query(c, "vms")
        fx.add_schedule(c, qid, "badkeys", mode="append", keys=["vm_id"])
        fx.create_table(c, "badkeys", "name text")
        c.execute(sa.text("CREATE TABLE stackql_inventory.plain (a int)"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.mv AS SELECT 1 AS a"))
    cases = [
        (("github_repos", r1, r1), ErrorKind.VALIDATION, "two different runs"),
        (("replaced", 1, 2), ErrorKind.VALIDATION, "replace mode"),
        (("badkeys", 1, 2), ErrorKind.VALIDATION, "vm_id"),
        (("plain", 1, 2), ErrorKind.VALIDATION, "Cannot tell how"),
        (("mv", 1, 2), ErrorKind.NOT_FOUND, "not an inventory table"),
        (("nope", 1, 2), ErrorKind.NOT_FOUND, "not an inventory table"),
    ]
    for args, kind, text in cases:
        with pytest.raises(UserFacingError) as e:
            inventory_diff.diff_runs(*args)
        assert e.value.kind is kind and text in e.value.message, args
    assert inventory_diff.run_choices("replaced") == ("replace", [])


def test_a_slow_comparison_is_stopped_with_a_message(db: sa.Engine, monkeypatch: pytest.MonkeyPatch) -> None:
    with db.begin() as c:
        fx.create_table(c, "huge", "k int, v text")
        for run in (1, 2):
            c.execute(sa.text("INSERT INTO stackql_inventory.huge SELECT g, md5((g * :r)::text), :r, now() "
                              "FROM generate_series(1, 300000) g"), {"r": run})
        fx.add_run(c, "huge", mode="append")
    monkeypatch.setattr(inventory_diff, "DIFF_TIMEOUT_MS", 50)
    with pytest.raises(UserFacingError) as e:
        inventory_diff.diff_runs("huge", 1, 2)
    assert e.value.kind is ErrorKind.TIMEOUT
