"""The house: sdviz in layers that import downward only, no import cycle, short functions, lint clean.

These read the code, not run it: each fails the moment a change breaks the structure the README draws."""

from __future__ import annotations

import ast
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
LONGEST_FUNCTION = 120  # lines, in sdviz/ and ui/
LONGEST_UI_MODULE = 400  # lines
MOST_TOP_MODULES = 8  # modules and layers at sdviz/'s top level


def _modules() -> dict[str, Path]:
    found = {}
    for path in sorted((ROOT / "sdviz").rglob("*.py")):
        name = ".".join(path.relative_to(ROOT).with_suffix("").parts)
        found[name.removesuffix(".__init__")] = path
    return found


def _imports(modules: dict[str, Path]) -> dict[str, set[str]]:
    """Each sdviz module's imports of other sdviz modules, those inside functions included."""
    def owner(name: str) -> str | None:
        while name and name not in modules:
            name = name.rpartition(".")[0]
        return name or None

    edges = {}
    for module, path in modules.items():
        package = module if path.name == "__init__.py" else module.rpartition(".")[0]
        targets = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                targets.update(alias.name for alias in node.names)
            elif isinstance(node, ast.ImportFrom):
                base = node.module or ""
                if node.level:
                    parts = package.split(".")[: len(package.split(".")) - node.level + 1]
                    base = ".".join(parts + ([base] if base else []))
                targets.update([base, *(f"{base}.{alias.name}" for alias in node.names)])
        edges[module] = {owner(t) for t in targets if t.startswith("sdviz")} - {module, "sdviz", None}
    return edges


def test_no_import_cycle_in_sdviz():
    edges = _imports(_modules())
    finished, path = set(), []

    def visit(module: str) -> None:
        if module in path:
            raise AssertionError(f"import cycle: {' -> '.join(path[path.index(module):] + [module])}")
        if module in finished:
            return
        path.append(module)
        for target in sorted(edges[module]):
            visit(target)
        path.pop()
        finished.add(module)

    for module in edges:
        visit(module)


def test_the_layer_contract_holds():
    """pyproject.toml's import-linter contracts: sdviz's layers import downward only; no gradio in sdviz."""
    linter = Path(sys.executable).with_name("lint-imports")
    result = subprocess.run([str(linter)], cwd=ROOT, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-2000:]
    assert "Contracts: 2 kept, 0 broken" in result.stdout


def test_functions_and_ui_modules_are_short_and_the_top_level_small():
    long = []
    for path in [*sorted((ROOT / "sdviz").rglob("*.py")), *sorted((ROOT / "ui").rglob("*.py"))]:
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                lines = node.end_lineno - node.lineno + 1
                if lines > LONGEST_FUNCTION:
                    long.append(f"{path.relative_to(ROOT)}:{node.name} ({lines} lines)")
    assert not long, long
    big = [f"{p.relative_to(ROOT)} ({n})" for p in sorted((ROOT / "ui").rglob("*.py"))
           if (n := len(p.read_text().splitlines())) > LONGEST_UI_MODULE]
    assert not big, big
    top = [p.name for p in (ROOT / "sdviz").iterdir()
           if p.name not in ("__init__.py", "__main__.py", "__pycache__") and (p.suffix == ".py" or p.is_dir())]
    assert len(top) <= MOST_TOP_MODULES, top


def test_ruff_is_clean():
    result = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache", "."], cwd=ROOT,
                            capture_output=True, text=True)
    assert result.returncode == 0, result.stdout[-4000:]
