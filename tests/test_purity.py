"""DESIGN.md's boundaries: only app.py and web/ know Flask; only the diffusers backend imports torch, and only when
it is used; nothing of ours does work at import time that needs torch, Ray or Flask."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
DOMAIN = sorted(p.relative_to(ROOT).as_posix() for p in [*ROOT.glob("game/**/*.py"), *ROOT.glob("inference/**/*.py")])
HEAVY = {"torch", "diffusers", "transformers", "ray"}
TORCH = {"torch", "diffusers", "transformers"}
LAZY_HEAVY = {"inference/diffusers_backend.py": TORCH, "inference/loading.py": TORCH,
              "inference/diffusers_img2img.py": TORCH, "inference/denoise.py": TORCH, "inference/checkpoints.py": TORCH,
              "inference/optimizations.py": TORCH,
              "inference/painters.py": {"ray"}, "inference/painter_actor.py": {"ray"}}


def imports(path: Path, top_level_only: bool) -> set[str]:
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    names = set()
    for node in nodes:
        if isinstance(node, ast.Import):
            names |= {a.name.split(".")[0] for a in node.names}
        elif isinstance(node, ast.ImportFrom) and node.module and not node.level:
            names.add(node.module.split(".")[0])
    return names


@pytest.mark.slow
@pytest.mark.parametrize("module", DOMAIN)
def test_domain_modules_know_no_flask_and_import_heavy_libraries_only_where_used(module):
    path = ROOT / module
    if module != "inference/__main__.py":  # the API alone's entry point starts the app (app.py), nothing else
        assert not imports(path, False) & {"flask", "werkzeug", "flask_wtf", "flask_limiter", "web", "app"}, (
            f"{module} imports the web layer")
    assert not imports(path, True) & HEAVY, f"{module} imports a heavy library at import time"
    assert not imports(path, False) & (HEAVY - LAZY_HEAVY.get(module, set())), f"{module} imports torch or Ray"


@pytest.mark.slow
def test_importing_the_app_loads_neither_torch_nor_ray():
    code = (
        "import sys, app; app.create_app; print(sorted(m for m in ('torch', 'diffusers', 'ray') if m in sys.modules))"
    )
    out = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
