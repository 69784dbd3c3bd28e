"""Reflex config. Production (`reflex run --env prod --single-port`) serves UI and websocket on one port."""

import reflex as rx

from stackql_inventory.config import get_settings

_settings = get_settings()
# On Databricks Apps both halves share $DATABRICKS_APP_PORT; dev keeps Reflex's two ports.
_ports = (
    {"frontend_port": _settings.databricks_app_port, "backend_port": _settings.databricks_app_port}
    if _settings.databricks_app_port
    else {}
)

config = rx.Config(
    app_name="stackql_inventory",
    telemetry_enabled=False,
    show_built_with_reflex=False,
    plugins=[rx.plugins.RadixThemesPlugin(theme=rx.theme(accent_color="indigo", gray_color="slate", radius="medium"))],
    disable_plugins=[rx.plugins.SitemapPlugin],  # an internal tool: no sitemap
    # One worker holds every session in memory: nothing is pickled to disk after each event
    # (big results live in a server-side cache, not in state). Sessions end with the process.
    state_manager_mode="memory",
    **_ports,
)
