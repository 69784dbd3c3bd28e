"""IDE export: the download path is handed out only for a result the store still holds for that user."""

from __future__ import annotations

from collections.abc import Iterator

import pytest

from stackql_inventory.services import ide_queries, result_store
from stackql_inventory.services.errors import ErrorKind, UserFacingError


@pytest.fixture
def store(monkeypatch: pytest.MonkeyPatch) -> Iterator[result_store.ResultStore]:
    monkeypatch.setenv("STACKQL_INVENTORY_RESULTS_PER_SESSION", "1")
    from stackql_inventory.config import get_settings

    get_settings.cache_clear()
    result_store.reset()
    yield result_store.get_store()
    result_store.reset()
    monkeypatch.undo()
    get_settings.cache_clear()


def test_export_path_of_a_held_result(store: result_store.ResultStore) -> None:
    stored = store.put(session="tab-1", owner="ana", columns=["a"], rows=[("1",)])
    assert ide_queries.export_path(stored.id, "ana", "csv") == f"/api/ide/results/{stored.id}/export.csv"
    assert ide_queries.export_path(stored.id, "ana", "json") == f"/api/ide/results/{stored.id}/export.json"


@pytest.mark.parametrize(("case", "kind", "message"), [
    ("evicted", ErrorKind.NOT_FOUND, "no longer held on the server"),
    ("another user's", ErrorKind.NOT_FOUND, "no longer held on the server"),
    ("no result", ErrorKind.NOT_FOUND, "There is no result to export: run a query first."),
    ("bad format", ErrorKind.VALIDATION, "Export as csv or json, not 'xlsx'."),
])
def test_export_path_refuses_what_would_not_download(store: result_store.ResultStore, case: str, kind: ErrorKind,
                                                     message: str) -> None:
    first = store.put(session="tab-1", owner="ana", columns=["a"], rows=[("1",)])
    second = store.put(session="tab-1", owner="ana", columns=["a"], rows=[("2",)])  # one per session: evicts first
    result_id, owner, fmt = {
        "evicted": (first.id, "ana", "csv"),
        "another user's": (second.id, "bob", "json"),
        "no result": ("", "ana", "json"),
        "bad format": (second.id, "ana", "xlsx"),
    }[case]
    with pytest.raises(UserFacingError) as e:
        ide_queries.export_path(result_id, owner, fmt)
    assert e.value.kind is kind
    assert message in e.value.message
