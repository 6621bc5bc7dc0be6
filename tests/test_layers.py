"""The packages' layers, read from the source: foundation <- model <- segmentation <-
classification, and the statistics on the foundation only. A module importing above its layer
fails here."""
import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
PROJECT = ("cxrstats", "cxrseg", "cxrcls", "vendor_medsam", "experiments", "benchmarks", "tools",
           "tests")

# What each layer may import of the project (besides itself).
ALLOWED = {
    "cxrstats.foundation": set(),
    "cxrstats": {"cxrstats.foundation"},
    "vendor_medsam": {"cxrstats.foundation"},
    "cxrseg": {"cxrstats.foundation", "cxrstats", "vendor_medsam"},
    "cxrcls": {"cxrstats.foundation", "cxrstats", "vendor_medsam", "cxrseg"},
}


def layer_of(module: str) -> str:
    return "cxrstats.foundation" if module.startswith("cxrstats.foundation") else \
        module.split(".")[0]


def project_imports(path: Path) -> set[str]:
    """Absolute names of the project modules `path` imports (relative imports stay in their
    package and are skipped)."""
    names = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
    return {n for n in names if n.split(".")[0] in PROJECT}


def product_modules() -> list:
    params = []
    for package in ("cxrstats", "cxrseg", "cxrcls", "vendor_medsam"):
        for path in sorted((ROOT / package).rglob("*.py")):
            module = ".".join(path.relative_to(ROOT).with_suffix("").parts)
            params.append(pytest.param(module, path, id=module))
    return params


@pytest.mark.parametrize("module, path", product_modules())
def test_a_module_imports_only_its_own_layer_and_those_below(module, path):
    own = layer_of(module)
    wrong = sorted(name for name in project_imports(path)
                   if layer_of(name) != own and layer_of(name) not in ALLOWED[own])
    assert not wrong, f"{module} ({own}) imports {wrong}, above its layer"


def test_the_check_sees_a_wrong_import(tmp_path):
    bad = tmp_path / "bad.py"
    bad.write_text("from cxrcls.train import main\nimport numpy\nfrom . import sibling\n")
    assert project_imports(bad) == {"cxrcls.train"}
    assert "cxrcls" not in ALLOWED["cxrstats.foundation"]
