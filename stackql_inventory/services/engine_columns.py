"""Column order of a stackql result: its JSON keys (sorted alphabetically by Go) put back into SELECT order."""

from __future__ import annotations

import re
from collections.abc import Callable

from stackql_inventory.services import sql_text
from stackql_inventory.services.errors import UserFacingError


def resolve_columns(statement: str, keys: list[str], describe: Callable[[str], list[str]]) -> list[str]:
    """Put stackql's JSON keys (sorted alphabetically by Go) back into SELECT order.

    The order comes from the statement (aliases, column names, expression texts via sql_text/sqlglot),
    `*` / `t.*` and anything unresolvable from `describe(fqn)` (DESCRIBE column order); keys not
    accounted for go last, in JSON order. With no keys (empty result) the promised columns are returned.
    """
    meta = sql_text.meta_columns(statement)
    if meta is not None:
        return _merge_in_order(meta, keys) if keys else meta
    items = sql_text.select_items(statement)
    if items is None:
        return _order_by_describe(keys, sql_text.referenced_resources(statement), describe)
    remaining = list(keys)
    ordered: list[str] = []
    unresolved = False
    for item in items:
        if item.star is not None:
            described = [c for fqn in item.star for c in _safe_describe(describe, fqn)]
            if not keys:
                ordered.extend(c for c in described if c not in ordered)
                continue
            for col in described:
                key = _find_key(col, remaining)
                if key is not None:
                    ordered.append(key)
                    remaining.remove(key)
            continue
        key = _match_item(item, remaining)
        if key is not None:
            ordered.append(key)
            remaining.remove(key)
        elif not keys:
            ordered.append(item.name or item.text)
        else:
            unresolved = True
    if unresolved and remaining:
        remaining = _order_by_describe(remaining, sql_text.referenced_resources(statement), describe)
    return ordered + remaining


def _safe_describe(describe: Callable[[str], list[str]], fqn: str) -> list[str]:
    try:
        return list(describe(fqn)) if fqn else []
    except UserFacingError:
        return []


def _find_key(name: str, keys: list[str]) -> str | None:
    if name in keys:
        return name
    low = name.lower()
    return next((k for k in keys if k.lower() == low), None)


def _normal(text: str) -> str:
    return re.sub(r"\s+", "", text).lower().replace("`", "").replace('"', "")


def _match_item(item: sql_text.SelectItem, keys: list[str]) -> str | None:
    if item.name:
        key = _find_key(item.name, keys)
        if key is not None:
            return key
    key = _find_key(item.text, keys)
    if key is not None:
        return key
    wanted = _normal(item.text)
    return next((k for k in keys if _normal(k) == wanted), None)


def _merge_in_order(expected: list[str], keys: list[str]) -> list[str]:
    ordered = [k for e in expected if (k := _find_key(e, keys)) is not None]
    return ordered + [k for k in keys if k not in ordered]


def _order_by_describe(keys: list[str], resources: list[str], describe: Callable[[str], list[str]]) -> list[str]:
    described = [c.lower() for fqn in resources for c in _safe_describe(describe, fqn)]
    rank = {c: i for i, c in reversed(list(enumerate(described)))}
    known = sorted((k for k in keys if k.lower() in rank), key=lambda k: rank[k.lower()])
    return known + [k for k in keys if k.lower() not in rank]
