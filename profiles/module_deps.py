"""Print Make variables listing the project source files each pipeline stage runs.

    python3 profiles/module_deps.py NAME=package.module ...   ->   CODE_NAME := a.py b.py ...

For each module, the files are the module itself and every project module it imports, transitively
(found by reading `import` statements, without importing anything), plus the `__init__.py` of each
package on the way. A stage's Make target depends on these files, so editing `cxrcls/train.py`
re-runs the training runs but not the segmentation. Standard library only: it runs before the
virtual environment exists.
"""
from __future__ import annotations

import ast
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PACKAGES = ("cxrseg", "cxrcls", "cxrstats", "vendor_medsam")


def module_file(name: str) -> Path | None:
    """The source file of a project module name, or None when it is not part of the project."""
    if name.split(".")[0] not in PACKAGES:
        return None
    base = ROOT.joinpath(*name.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def imported_modules(path: Path, module: str) -> set[str]:
    """Absolute names of the modules `path` imports (relative imports resolved against `module`)."""
    is_package = path.name == "__init__.py"
    package = module if is_package else module.rpartition(".")[0]
    names: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                parts = package.split(".")
                base = ".".join(parts[: len(parts) - node.level + 1])
                prefix = f"{base}.{node.module}" if node.module else base
            else:
                prefix = node.module or ""
            names.add(prefix)
            names.update(f"{prefix}.{alias.name}" for alias in node.names)  # `from pkg import mod`
    return names


def closure(module: str) -> list[str]:
    """Project files needed to run `module`, sorted, relative to the repository root."""
    seen: set[Path] = set()
    todo = [module]
    while todo:
        name = todo.pop()
        parts = name.split(".")
        for i in range(1, len(parts) + 1):  # a module's packages run their __init__.py first
            path = module_file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(imported_modules(path, ".".join(parts[:i])))
    return sorted(str(p.relative_to(ROOT)) for p in seen)


def main(argv: list[str] | None = None) -> int:
    for item in sys.argv[1:] if argv is None else argv:
        name, _, module = item.partition("=")
        files = closure(module)
        if module_file(module) is None:
            raise SystemExit(f"error: {module}: no such project module (from {item!r})")
        print(f"CODE_{name} := {' '.join(files)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
