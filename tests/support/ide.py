"""Helpers for the IDE tests: the process-wide engine on the stackql stand-in, and provider credential mappings."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest
import sqlalchemy as sa

from stackql_inventory import config
from stackql_inventory.services import catalog, engine, result_store
from stackql_inventory.services.secrets import LocalSecrets
from tests.fakes.install import install_fake_stackql

AWS_VALUES = {"AWS_ACCESS_KEY_ID": "AKIAIDETESTS0001", "AWS_SECRET_ACCESS_KEY": "ide-tests-secret-$`'\"-value"}


def map_provider(db: sa.Engine, data_dir: Path, provider: str, values: dict[str, str], *,
                 scope: str = "ide-tests", write_secrets: bool = True) -> None:
    """Map `provider`'s env vars to secrets in `scope` (rows in provider_config, values as local secret files)."""
    secrets = LocalSecrets(Path(data_dir) / "secrets")
    with db.begin() as c:
        for var, value in values.items():
            key = f"{provider}-{var.lower().replace('_', '-')}"
            if write_secrets:
                secrets.put(scope, key, value)
            c.execute(sa.text("INSERT INTO stackql_app.provider_config (provider, env_var_name, secret_scope, "
                              "secret_key) VALUES (:p, :v, :s, :k)"), {"p": provider, "v": var, "s": scope, "k": key})


def unmap_all(db: sa.Engine) -> None:
    with db.begin() as c:
        c.execute(sa.text("DELETE FROM stackql_app.provider_config"))


@pytest.fixture
def process_engine(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> Iterator[Path]:
    """The process-wide engine, catalog and result store, on a fresh copy of the stand-in; yields the data dir."""
    download_dir = tmp_path_factory.mktemp("ide-stackql")
    install_fake_stackql(download_dir)
    monkeypatch.setenv("STACKQL_DOWNLOAD_DIR", str(download_dir))
    # Its own data dir: installed providers (the approot) and secrets start empty.
    monkeypatch.setenv("STACKQL_INVENTORY_DATA_DIR", str(tmp_path_factory.mktemp("ide-data")))
    config.get_settings.cache_clear()
    engine.reset()
    catalog.reset()
    result_store.reset()
    try:
        yield config.get_settings().data_dir
    finally:
        catalog.reset()
        engine.reset()
        result_store.reset()
        config.get_settings.cache_clear()


# ============================================================================ browser helpers


def open_ide(page) -> None:
    """Open the IDE and wait until Monaco is ready to take keystrokes (it drops them before that)."""
    from playwright.sync_api import expect

    page.goto("/ide")
    page.wait_for_selector("[data-testid=ide-editor] .monaco-editor .view-lines", timeout=60_000)
    expect(page.get_by_test_id("ide-run")).to_be_enabled()


def editor_value(page) -> str:
    return page.evaluate("() => window.__stackqlIde ? window.__stackqlIde.value() : null")


def type_sql(page, text: str, *, clear: bool = True) -> None:
    """Type into the editor as a user does; Escape closes the suggestion widget (Enter would accept it)."""
    editor = page.locator("[data-testid=ide-editor] .monaco-editor")
    editor.click()
    page.wait_for_function("() => document.activeElement && document.activeElement.closest('.monaco-editor')")
    if clear:
        page.keyboard.press("Control+a")
        page.keyboard.press("Delete")
    for i, line in enumerate(text.split("\n")):
        if i:
            page.keyboard.press("Escape")
            page.keyboard.press("Enter")
            page.keyboard.press("Home")
        page.keyboard.type(line)
    page.keyboard.press("Escape")
    page.wait_for_function("(t) => window.__stackqlIde && window.__stackqlIde.value().replace(/\\s+/g, ' ').trim()"
                           " === t.replace(/\\s+/g, ' ').trim()", arg=text)


def app_data_dir(app_env: dict[str, str]) -> Path:
    return Path(app_env["STACKQL_INVENTORY_DATA_DIR"])
