"""sql_text: comments, statements, the statement under the cursor, completion context and names."""

from __future__ import annotations

import pytest

from stackql_inventory.services.sql_text import (
    CompletionContext, SelectItem, completion_context, leading_keyword, meta_columns, referenced_resources,
    resource_aliases, select_items, split_statements, statement_at, statements, strip_comments,
)


@pytest.mark.parametrize("text, expected", [
    ("SELECT 1 -- note\nFROM t", "SELECT 1 \nFROM t"),
    ("SELECT /* a; b */1", "SELECT  1"),
    ("SELECT '--kept' AS a, '/* kept */' AS b", "SELECT '--kept' AS a, '/* kept */' AS b"),
    ('SELECT "col--x", `a/*b`', 'SELECT "col--x", `a/*b`'),
    ("SELECT 1 /* unterminated", "SELECT 1  "),
    ("-- only\n-- comments", "\n"),
])
def test_strip_comments(text, expected):
    assert strip_comments(text) == expected


@pytest.mark.parametrize("text, expected", [
    ("SELECT 1", ["SELECT 1"]),
    ("SELECT 1;", ["SELECT 1"]),
    ("SELECT 1; SELECT 2 ;\n", ["SELECT 1", "SELECT 2"]),
    ("SELECT 'a;b' AS x; SELECT \"c;d\"; SELECT `e;f`", ["SELECT 'a;b' AS x", 'SELECT "c;d"', "SELECT `e;f`"]),
    ("SELECT 1 -- ; not a split\n; SELECT 2", ["SELECT 1 -- ; not a split", "SELECT 2"]),
    ("SELECT /* ; */ 1", ["SELECT /* ; */ 1"]),
    (";;  ; -- nothing\n;", []),
    ("", []),
    ("SELECT 'it''s; fine'; SELECT 2", ["SELECT 'it''s; fine'", "SELECT 2"]),
    ("SELECT 'unterminated; SELECT 2", ["SELECT 'unterminated; SELECT 2"]),
    ("-- header\nSELECT 1;\n-- trailing only", ["-- header\nSELECT 1"]),
])
def test_split_statements(text, expected):
    assert split_statements(text) == expected


def test_statements_carry_their_offsets():
    text = "  SELECT 1 ;\n\nSHOW PROVIDERS;"
    found = statements(text)
    assert [(s.text, text[s.start:s.end]) for s in found] == [
        ("SELECT 1", "SELECT 1"), ("SHOW PROVIDERS", "SHOW PROVIDERS")]


EDITOR = "SELECT 1;\nSELECT 'a;b' AS x\nFROM t;\n\n\nSHOW PROVIDERS"


@pytest.mark.parametrize("marker, expected", [
    ("|SELECT 1;", "SELECT 1"),  # start of text
    ("SELECT 1|;", "SELECT 1"),  # before the ;
    ("SELECT 1;|", "SELECT 1"),  # right after the ; on the same line
    ("SELECT 'a|;b'", "SELECT 'a;b' AS x\nFROM t"),  # inside a quoted ;
    ("FROM t;|", "SELECT 'a;b' AS x\nFROM t"),
    ("FROM t;\n|", "SELECT 'a;b' AS x\nFROM t"),  # a blank line after a statement
    ("\n\n|\nSHOW", "SELECT 'a;b' AS x\nFROM t"),
    ("SHOW PRO|VIDERS", "SHOW PROVIDERS"),
    ("SHOW PROVIDERS|", "SHOW PROVIDERS"),
])
def test_statement_at(marker, expected):
    before, after = marker.split("|")
    offset = EDITOR.index(before + after) + len(before)
    assert statement_at(EDITOR, offset) == expected


@pytest.mark.parametrize("text, offset, expected", [
    ("", 0, ""),
    ("  \n -- nothing here\n", 5, ""),
    ("\n\nSELECT 2", 0, "SELECT 2"),  # blank top: the statement after
    ("SELECT 1", 99, "SELECT 1"),  # offsets are clamped
])
def test_statement_at_edges(text, offset, expected):
    assert statement_at(text, offset) == expected


@pytest.mark.parametrize("text, expected", [
    ("SELECT * FROM aw|", CompletionContext("provider", partial="aw")),
    ("SELECT * FROM |", CompletionContext("provider")),
    ("SELECT * FROM aws.|", CompletionContext("service", provider="aws")),
    ("SELECT * FROM aws.ec|", CompletionContext("service", partial="ec", provider="aws")),
    ("SELECT * FROM aws.ec2.in|", CompletionContext("resource", partial="in", provider="aws", service="ec2")),
    ("SELECT * FROM aws.ec2.in| WHERE region = 'x'",
     CompletionContext("resource", partial="in", provider="aws", service="ec2")),
    ("SELECT * FROM a.b.c x JOIN google.comp|", CompletionContext("service", partial="comp", provider="google")),
    ("SELECT * FROM a.b.c x, goo|", CompletionContext("provider", partial="goo")),
    ("DESCRIBE aws.s3.|", CompletionContext("resource", provider="aws", service="s3")),
    ("DESCRIBE EXTENDED google.|", CompletionContext("service", provider="google")),
    ("SHOW SERVICES IN go|", CompletionContext("provider", partial="go")),
    ("SHOW SERVICES IN google.|", CompletionContext("none")),
    ("SHOW EXTENDED RESOURCES IN google.co|", CompletionContext("service", partial="co", provider="google")),
    ("SHOW METHODS IN github.repos.re|",
     CompletionContext("resource", partial="re", provider="github", service="repos")),
    ("INSERT INTO aws.|", CompletionContext("service", provider="aws")),
    ("SELECT | FROM aws.ec2.instances i", CompletionContext("column", resources=("aws.ec2.instances",))),
    ("SELECT i.| FROM aws.ec2.instances i JOIN aws.ec2.volumes v ON 1=1",
     CompletionContext("column", qualifier="i", resources=("aws.ec2.instances",))),
    ("SELECT v.si| FROM aws.ec2.instances i JOIN aws.ec2.volumes v ON 1=1",
     CompletionContext("column", partial="si", qualifier="v", resources=("aws.ec2.volumes",))),
    ("SELECT instanceId, | FROM aws.ec2.instances", CompletionContext("column", resources=("aws.ec2.instances",))),
    ("SELECT x FROM aws.ec2.instances WHERE reg|",
     CompletionContext("column", partial="reg", resources=("aws.ec2.instances",))),
    ("SELECT x FROM aws.ec2.instances WHERE region = 'us' AND ins|",
     CompletionContext("column", partial="ins", resources=("aws.ec2.instances",))),
    ("SELECT 1; SELECT | FROM okta.user.users", CompletionContext("column", resources=("okta.user.users",))),
    ("SEL|", CompletionContext("keyword", partial="SEL")),
    ("|", CompletionContext("keyword")),
    ("SELECT 'aws.|", CompletionContext("none")),
    ("SELECT 'aws.|' AS x FROM t", CompletionContext("none")),
    ("SELECT 1 -- FROM aws.|", CompletionContext("none")),
    ("SELECT /* FROM aws.| */ 1", CompletionContext("none")),
])
def test_completion_context(text, expected):
    offset = text.index("|")
    assert completion_context(text.replace("|", ""), offset) == expected


@pytest.mark.parametrize("text, expected", [
    ("SELECT * FROM aws.ec2.instances WHERE region = 'x'", ["aws.ec2.instances"]),
    ("SELECT * FROM aws.ec2.instances i JOIN google.compute.instances g ON 1=1, github.repos.repos r "
     "WHERE x IN (SELECT 1 FROM okta.user.users)",
     ["aws.ec2.instances", "google.compute.instances", "github.repos.repos", "okta.user.users"]),
    ("DESCRIBE EXTENDED azure.compute.virtual_machines; SHOW METHODS IN cloudflare.zones.zones",
     ["azure.compute.virtual_machines", "cloudflare.zones.zones"]),
    ("SELECT a.b.c FROM aws.s3.buckets; SELECT 1 FROM aws.s3.buckets", ["aws.s3.buckets"]),
    ("SELECT 'FROM aws.ec2.instances' AS s -- FROM google.compute.instances", []),
    ("INSERT INTO github.repos.repos (name) SELECT 'x'; EXEC aws.ec2.instances.start_instances @region='x'",
     ["github.repos.repos", "aws.ec2.instances"]),
    ("SELECT * FROM `aws`.`ec2`.`instances`", ["aws.ec2.instances"]),
    ("SELECT * FROM t", []),
])
def test_referenced_resources(text, expected):
    assert referenced_resources(text) == expected


def test_resource_aliases():
    assert resource_aliases("SELECT * FROM aws.ec2.instances AS i JOIN google.compute.instances g ON 1=1 "
                            "JOIN okta.user.users WHERE 1=1") == {
        "instances": "aws.ec2.instances", "i": "aws.ec2.instances", "g": "google.compute.instances",
        "users": "okta.user.users"}


@pytest.mark.parametrize("statement, expected", [
    ("SELECT i.instanceId, json_extract(i.tags, '$.a') AS a, count(*), i.*, * FROM aws.ec2.instances i "
     "JOIN aws.ec2.volumes v ON 1=1",
     [SelectItem("instanceId", "i.instanceId"), SelectItem("a", "json_extract(i.tags, '$.a') AS a"),
      SelectItem(None, "count(*)"), SelectItem(None, "i.*", ("aws.ec2.instances",)),
      SelectItem(None, "*", ("aws.ec2.instances", "aws.ec2.volumes"))]),
    ("SELECT DISTINCT name n, `quoted col`, 'it''s' AS s FROM aws.s3.buckets",
     [SelectItem("n", "name n"), SelectItem("quoted col", "`quoted col`"), SelectItem("s", "'it''s' AS s")]),
    ("SELECT a FROM x.y.z UNION SELECT b FROM x.y.w", [SelectItem("a", "a")]),
    ("WITH c AS (SELECT 1 AS q, 2 AS r) SELECT r, q FROM c", [SelectItem("r", "r"), SelectItem("q", "q")]),
    ("SELECT split_part(machineType, '/', -1) AS mt, (SELECT 1) AS sub FROM google.compute.instances",
     [SelectItem("mt", "split_part(machineType, '/', -1) AS mt"), SelectItem("sub", "(SELECT 1) AS sub")]),
    ("SELECT 'x' AS a", [SelectItem("a", "'x' AS a")]),
    ("SHOW PROVIDERS", None),
    ("DESCRIBE aws.ec2.instances", None),
])
def test_select_items(statement, expected):
    assert select_items(statement) == expected


def test_select_items_fall_back_to_tokens_when_sqlglot_cannot_parse():
    # `@` is not SQL sqlglot knows; the token fallback still finds the names.
    assert select_items("SELECT name AS n, t.* , region FROM aws.s3.buckets t WHERE x = @y") == [
        SelectItem("n", "name AS n"), SelectItem(None, "t.*", ("aws.s3.buckets",)), SelectItem("region", "region")]


@pytest.mark.parametrize("statement, expected", [
    ("SHOW PROVIDERS", ["name", "version"]),
    ("show services in aws", ["id", "name", "title"]),
    ("SHOW EXTENDED SERVICES IN aws", ["id", "name", "title", "description", "version", "preferred"]),
    ("SHOW RESOURCES IN aws.ec2 LIKE '%inst%'", ["name", "id"]),
    ("SHOW EXTENDED RESOURCES IN aws.ec2", ["name", "id", "description"]),
    ("SHOW METHODS IN aws.ec2.instances", ["MethodName", "RequiredParams", "SQLVerb"]),
    ("DESCRIBE aws.ec2.instances", ["name", "type"]),
    ("-- c\nDESCRIBE EXTENDED aws.ec2.instances;", ["name", "type", "description"]),
    ("REGISTRY LIST", ["provider", "version"]),
    ("REGISTRY LIST aws", ["provider", "versions"]),
    ("SELECT 1", None),
    ("REGISTRY PULL aws", None),
])
def test_meta_columns(statement, expected):
    assert meta_columns(statement) == expected


@pytest.mark.parametrize("statement, expected", [
    ("  -- c\n select 1", "SELECT"), ("/* x */ DESCRIBE a.b.c", "DESCRIBE"), ("", ""), ("(SELECT 1)", ""),
])
def test_leading_keyword(statement, expected):
    assert leading_keyword(statement) == expected
