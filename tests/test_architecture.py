"""Dependency direction flows -> pipeline -> detectors, and no I/O libraries in detectors."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
#: The two command entry points that start a Prefect flow; they import `flows` inside a function.
FLOW_LAUNCHERS = {"pipeline/cli/watch.py", "pipeline/demo.py"}


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


@pytest.mark.parametrize("path", _files("pipeline"), ids=lambda p: str(p.relative_to(ROOT)))
def test_pipeline_never_imports_prefect(path):
    rel = str(path.relative_to(ROOT))
    for module, top_level in _imports(path):
        root = module.split(".")[0]
        assert root != "prefect", f"{rel} imports {module}"
        if root == "flows":
            assert rel in FLOW_LAUNCHERS and not top_level, f"{rel} imports {module}"


def test_importing_the_domain_and_cli_loads_no_prefect():
    code = ("import sys, pipeline.cli, pipeline.worker, pipeline.runner, pipeline.evaluate, pipeline.demo; "
            "print(sorted(m for m in sys.modules if m.split('.')[0] in ('prefect', 'flows')))")
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
