"""DESIGN.md's boundaries: only the web modules import Flask; only the diffusers backend (and its checkpoint loader)
imports torch."""

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
WEB = {"app.py", "game/play.py", "game/admin.py", "inference/api.py"}
MODULES = sorted(p.relative_to(ROOT).as_posix() for p in [ROOT / "app.py", *ROOT.glob("game/*.py"), *ROOT.glob("inference/*.py")])


def top_level_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


def all_imports(path: Path) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.parametrize("module", MODULES)
def test_module_boundaries(module):
    path = ROOT / module
    if module not in WEB:
        assert "flask" not in all_imports(path), f"{module} imports Flask outside the web layer"
    assert not top_level_imports(path) & {"torch", "diffusers", "transformers"}, f"{module} imports torch at import time"
    if module not in ("inference/diffusers_backend.py", "inference/checkpoints.py"):
        assert not all_imports(path) & {"torch", "diffusers", "transformers"}, f"{module} imports torch"
