"""Layering: config, db, services and runner never import reflex (they run in job containers)."""

from __future__ import annotations

import pkgutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _modules(package: str) -> list[str]:
    path = ROOT.joinpath(*package.split("."))
    names = [package]
    for info in pkgutil.walk_packages([str(path)], prefix=package + "."):
        names.append(info.name)
    return names


LOWER_LAYERS = ["stackql_inventory.config", *_modules("stackql_inventory.db"),
                *_modules("stackql_inventory.services"), *_modules("runner")]


@pytest.mark.parametrize("module", LOWER_LAYERS)
def test_lower_layers_do_not_import_reflex(module: str) -> None:
    code = f"import sys, {module}; print('reflex' in sys.modules or 'reflex_base' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "False", f"{module} pulls in reflex"


def test_package_init_is_empty() -> None:
    assert (ROOT / "stackql_inventory" / "__init__.py").read_text().strip() == ""


def test_only_config_reads_the_environment() -> None:
    offenders = []
    for path in [*ROOT.joinpath("stackql_inventory").rglob("*.py"), *ROOT.joinpath("runner").rglob("*.py")]:
        if path.name == "config.py" and path.parent.name == "stackql_inventory":
            continue
        text = path.read_text()
        if "os.environ" in text or "os.getenv" in text:
            offenders.append(str(path.relative_to(ROOT)))
    assert offenders == []
