"""Locked-down networks: the app needs nothing outside its own origin, in the browser or on the server.

Monaco, AG Grid, fonts and icons come from the build; Reflex's telemetry and version checks are off;
and there is no "Built with Reflex" badge.
"""

from __future__ import annotations

import ipaddress
from urllib.parse import urlparse

import psutil
import pytest
from playwright.sync_api import Page, Request, expect

from tests.support.app_server import AppServer

pytestmark = pytest.mark.browser


def _outside(url: str, origin: str) -> bool:
    parsed = urlparse(url)
    if parsed.scheme in ("data", "blob", "about"):
        return False
    return f"{parsed.scheme}://{parsed.netloc}" not in (origin, origin.replace("http", "ws", 1))


def _remote_peers(pid: int) -> set[str]:
    """Non-loopback addresses the app's process tree is connected to."""
    peers: set[str] = set()
    root = psutil.Process(pid)
    for proc in [root, *root.children(recursive=True)]:
        try:
            conns = proc.net_connections(kind="inet")
        except (psutil.NoSuchProcess, psutil.AccessDenied):
            continue
        for c in conns:
            if c.raddr and not ipaddress.ip_address(c.raddr.ip).is_loopback:
                peers.add(f"{c.raddr.ip}:{c.raddr.port} ({proc.name()})")
    return peers


def test_pages_load_nothing_from_outside_their_origin(page: Page, app_server: AppServer) -> None:
    origin = app_server.url.rstrip("/")
    outside: list[str] = []

    def record(request: Request) -> None:
        if _outside(request.url, origin):
            outside.append(request.url)

    page.on("request", record)
    page.on("websocket", lambda ws: outside.append(ws.url) if _outside(ws.url, origin) else None)
    page.goto("/ide")
    editor = page.locator(".monaco-editor").first
    expect(editor).to_be_visible()
    editor.click()
    page.keyboard.type("SHOW PROVIDERS")
    page.get_by_test_id("ide-run").click()
    expect(page.get_by_test_id("ide-row-count")).to_be_visible()
    for nav, heading in (("nav-schedules", "Schedules"), ("nav-inventory", "Inventory"),
                         ("nav-providers", "Providers")):
        page.get_by_test_id(nav).click()
        expect(page.get_by_test_id("page-heading")).to_have_text(heading)
    page.wait_for_load_state("networkidle")
    assert outside == []
    expect(page.get_by_text("Built with Reflex")).to_have_count(0)
    assert _remote_peers(app_server.process.pid) == set()
