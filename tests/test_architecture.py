"""Dependency direction app -> flows -> pipeline -> detectors, and no I/O libraries in detectors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _imports(path: Path) -> list[tuple[str, bool]]:
    """(module, at_top_level) for every import in a file."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    top = set(map(id, tree.body))
    found = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found += [(a.name, id(node) in top) for a in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.module, id(node) in top))
    return found


def _files(package: str) -> list[Path]:
    return sorted((ROOT / package).rglob("*.py"))


@pytest.mark.parametrize("path", _files("detectors"), ids=lambda p: p.name)
def test_detectors_do_no_io_and_know_no_pipeline(path):
    banned = ("pipeline", "flows", "prefect", "minio", "paho", "urllib", "requests", "socket", "sqlite3", "time")
    bad = [m for m, _ in _imports(path) if m.split(".")[0] in banned]
    assert not bad, f"{path.relative_to(ROOT)} imports {bad}"


def _layer(rel: str) -> str:
    """app -> flows -> pipeline -> detectors: the layer a file belongs to."""
    if rel.startswith("pipeline/app/"):
        return "app"
    return rel.split("/")[0]


#: What each layer may import from the project: only the layers below it.
ALLOWED = {"app": {"app", "flows", "pipeline", "detectors"}, "flows": {"flows", "pipeline", "detectors"},
           "pipeline": {"pipeline", "detectors"}, "detectors": {"detectors"}}


def _module_layer(module: str) -> str | None:
    if module == "pipeline.app" or module.startswith("pipeline.app."):
        return "app"
    root = module.split(".")[0]
    return root if root in ALLOWED else None


@pytest.mark.parametrize("path", _files("pipeline") + _files("flows"), ids=lambda p: str(p.relative_to(ROOT)))
def test_imports_go_one_way_app_flows_pipeline_detectors(path):
    rel = str(path.relative_to(ROOT))
    layer = _layer(rel)
    for module, _ in _imports(path):
        target = _module_layer(module)
        assert target is None or target in ALLOWED[layer], f"{rel} ({layer}) imports {module} ({target})"
        if layer == "pipeline":
            assert module.split(".")[0] != "prefect", f"{rel} imports {module}"


def test_flat_pipeline_is_gone():
    """pipeline/ holds sub-packages and data folders only, no loose modules besides its __init__."""
    loose = sorted(p.name for p in (ROOT / "pipeline").glob("*.py") if p.name != "__init__.py")
    assert not loose, loose


def test_importing_the_domain_and_cli_loads_no_prefect():
    code = ("import sys, pipeline.app.cli, pipeline.processing.worker, pipeline.processing.runner, "
            "pipeline.app.evaluate.run, pipeline.app.demo; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
