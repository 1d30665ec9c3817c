"""The architecture, as the layout promises it: the package is the product only, it never reads the
checkout's data, its modules import each other without a circle, and no module keys behaviour on a
built-in model's name."""

from __future__ import annotations

import ast
import re
from pathlib import Path

import tomllib
from setuptools import find_packages

REPO = Path(__file__).resolve().parents[1]
PACKAGE = REPO / "pipeline"


def module_name(path: Path) -> str:
    parts = list(path.relative_to(REPO).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def top_level_imports(path: Path) -> set[str]:
    """The package modules `path` imports when it is imported (function-local imports run later)."""
    found = set()
    for node in ast.parse(path.read_text(encoding="utf-8")).body:
        if isinstance(node, ast.ImportFrom) and (node.module or "").startswith("pipeline"):
            found.add(node.module)
            found.update(f"{node.module}.{alias.name}" for alias in node.names)
        elif isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names if alias.name.startswith("pipeline"))
    return found


def test_the_wheel_holds_the_product_only():
    include = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["setuptools"]["packages"]["find"]["include"]
    packages = find_packages(str(REPO), include=include)
    assert "pipeline" in packages and "pipeline.models.overlap_aware" in packages
    assert all(name == "pipeline" or name.startswith("pipeline.") for name in packages), packages


def test_no_module_of_the_package_reads_the_checkouts_data():
    for path in PACKAGE.rglob("*.py"):
        text = path.read_text(encoding="utf-8")
        assert not re.search(r"""["']shared["']|\.\./shared|parents\[\d\]""", text), f"{path} looks for ../shared"


def test_the_package_has_no_import_circle():
    modules = {module_name(path): path for path in PACKAGE.rglob("*.py")}
    graph = {name: {m for m in top_level_imports(path) if m in modules and m != name} for name, path in modules.items()}
    state: dict[str, int] = {}  # 1: on the stack, 2: done

    def visit(name: str, stack: list[str]) -> None:
        state[name] = 1
        for target in sorted(graph[name]):
            assert state.get(target) != 1, "import circle: " + " -> ".join([*stack[stack.index(target) :], target])
            if target not in state:
                visit(target, [*stack, target])
        state[name] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


def test_no_module_keys_behaviour_on_a_built_in_models_name():
    """What the pipeline needs of a model it reads from the model (`ModelTraits`); only the registry,
    the models themselves and the CLI's default mention the built-ins' names."""
    allowed = {
        "pipeline/models/registry.py",
        "pipeline/models/ge2e/model.py",
        "pipeline/models/overlap_aware/model.py",
        "pipeline/corpus/options.py",
    }
    for path in PACKAGE.rglob("*.py"):
        relative = str(path.relative_to(REPO))
        if relative in allowed:
            continue
        assert not re.search(r"""==\s*["']ge2e["']|["']ge2e["']\s*:""", path.read_text(encoding="utf-8")), relative
