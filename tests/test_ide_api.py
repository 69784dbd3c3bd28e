"""The IDE's HTTP endpoints (result windows, exports, completion) through a real ASGI client."""

from __future__ import annotations

import csv
import io
import json

import pytest
from starlette.testclient import TestClient

from stackql_inventory import api, config
from stackql_inventory.services import result_store
from tests.support.ide import process_engine

__all__ = ["process_engine"]

LOCAL = config.local_user()


@pytest.fixture
def store():
    result_store.reset()
    yield result_store.get_store()
    result_store.reset()


@pytest.fixture
def client() -> TestClient:
    return TestClient(api.create_app())


def put(store, owner: str = LOCAL, n: int = 500):
    rows = [(f"id-{i:04d}", str(i % 50), None if i % 7 == 0 else f'{{"k": {i}}}') for i in range(n)]
    return store.put(session="tab", owner=owner, columns=["id", "num", "doc"], rows=rows,
                     statement="SELECT id, num, doc FROM synthetic.bulk.items WHERE count = 500")


def test_rows_are_served_one_window_at_a_time(store, client):
    res = put(store)
    r = client.post(f"/api/ide/results/{res.id}/rows", json={"start": 100, "end": 300})
    assert r.status_code == 200 and r.headers["content-type"] == "application/json"
    assert r.headers["cache-control"] == "no-store"
    data = r.json()
    assert data["total"] == 500 and len(data["rows"]) == 200 and data["rows"][0] == ["id-0100", "0", '{"k": 100}']
    sorted_ = client.post(f"/api/ide/results/{res.id}/rows", json={
        "start": 0, "end": 3, "sort": [{"colId": "1", "sort": "desc"}],
        "filter": {"0": {"filterType": "text", "type": "endsWith", "filter": "9"}}}).json()
    assert sorted_["total"] == 50 and [r[1] for r in sorted_["rows"]] == ["49", "49", "49"]


def test_the_owner_check_uses_the_forwarded_identity(store, client):
    res = put(store, owner="ana@example.com")
    url = f"/api/ide/results/{res.id}/rows"
    assert client.post(url, json={"start": 0, "end": 1}).status_code == 404  # the local user is not ana
    assert client.post(url, json={"start": 0, "end": 1},
                       headers={"X-Forwarded-Email": "bob@example.com"}).status_code == 404
    ok = client.post(url, json={"start": 0, "end": 1}, headers={"X-Forwarded-Email": "ana@example.com"})
    assert ok.status_code == 200 and ok.json()["total"] == 500


@pytest.mark.parametrize(("body", "status", "message"), [
    (b"not json", 400, "not JSON"),
    (b"[1, 2]", 400, "JSON object"),
    (json.dumps({"start": 0, "end": 10, "sort": [{"colId": "9", "sort": "asc"}]}).encode(), 400, "no column"),
    (json.dumps({"start": 5, "end": 1}).encode(), 400, "out of range"),
    (b"x" * (api.MAX_BODY + 1), 400, "too large"),
])
def test_bad_requests_get_a_message(store, client, body, status, message):
    res = put(store)
    r = client.post(f"/api/ide/results/{res.id}/rows", content=body)
    assert r.status_code == status and message in r.json()["error"]


def test_an_evicted_result_says_to_run_again(store, client):
    r = client.post("/api/ide/results/not-a-result/rows", json={"start": 0, "end": 1})
    assert r.status_code == 404 and "run the query again" in r.json()["error"]
    assert client.get("/api/ide/results/not-a-result/export.csv").status_code == 404


def test_csv_and_json_downloads_hold_the_whole_result(store, client):
    res = put(store)
    r = client.get(f"/api/ide/results/{res.id}/export.csv")
    assert r.status_code == 200 and r.headers["content-type"].startswith("text/csv")
    disposition = r.headers["content-disposition"]
    assert disposition.startswith('attachment; filename="synthetic_bulk_items-') and disposition.endswith('.csv"')
    rows = list(csv.reader(io.StringIO(r.text)))
    assert rows[0] == ["id", "num", "doc"] and len(rows) == 501 and rows[1] == ["id-0000", "0", ""]
    j = client.get(f"/api/ide/results/{res.id}/export.json")
    data = j.json()
    assert len(data) == 500 and data[1] == {"id": "id-0001", "num": "1", "doc": {"k": 1}}
    assert client.get(f"/api/ide/results/{res.id}/export.xlsx").status_code == 404


def test_completion_endpoint(process_engine, client):
    r = client.post("/api/ide/complete", json={"text": "SELECT * FROM synthetic.bulk.", "offset": 29})
    assert r.status_code == 200
    data = r.json()
    assert data["kind"] == "resource" and data["error"] == ""
    assert data["items"][0]["label"] == "items" and data["items"][0]["kind"] == "resource"
    bad = client.post("/api/ide/complete", json={"text": 5, "offset": "x"})
    assert bad.status_code == 400 and "cursor offset" in bad.json()["error"]
