"""The list services behind the four pages read real rows."""

from __future__ import annotations

import sqlalchemy as sa

from stackql_inventory.services import inventory, library, providers, schedules


def test_empty_database_gives_empty_lists(db: sa.Engine) -> None:
    assert library.list_queries() == []
    assert schedules.list_schedules() == []
    assert providers.list_mappings() == []
    assert inventory.list_tables() == []


def test_lists_read_rows(db: sa.Engine) -> None:
    with db.begin() as c:
        qid = c.execute(sa.text(
            "INSERT INTO stackql_app.queries (name, description, query_text, provider, created_by) "
            "VALUES ('ec2', 'instances', 'SELECT 1', 'aws', 'ana') RETURNING id")).scalar()
        c.execute(sa.text(
            "INSERT INTO stackql_app.schedules (query_id, cron_expression, target_table) "
            "VALUES (:q, '*/5 * * * *', 'aws_ec2')"), {"q": qid})
        c.execute(sa.text(
            "INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, secret_key) "
            "VALUES ('aws', 'AWS_ACCESS_KEY_ID', 'inv', 'aws-key')"))
        c.execute(sa.text("CREATE TABLE stackql_inventory.aws_ec2 (id text)"))
        c.execute(sa.text("CREATE MATERIALIZED VIEW stackql_inventory.aws_ec2_mv AS SELECT * FROM stackql_inventory.aws_ec2"))

    assert [q.name for q in library.list_queries()] == ["ec2"]
    assert [q.name for q in library.list_queries("inst")] == ["ec2"]
    assert library.list_queries("nothing") == []
    (sch,) = schedules.list_schedules()
    assert (sch.query_name, sch.target, sch.write_mode, sch.is_active) == ("ec2", "stackql_inventory.aws_ec2",
                                                                           "replace", True)
    assert [(m.provider, m.env_var_name) for m in providers.list_mappings()] == [("aws", "AWS_ACCESS_KEY_ID")]
    assert [(t.name, t.kind) for t in inventory.list_tables()] == [("aws_ec2", "table"),
                                                                    ("aws_ec2_mv", "materialized view")]
