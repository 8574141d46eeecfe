"""The tree reads as the architecture: imports of shipped code point one way, and never at tooling.

    main.py -> web/ -> tasks/ -> jobs/ -> providers/ -> config.py, logs.py, errors.py

A module may import its own layer or any layer below it; nothing shipped imports `local/`, `ops/`,
`benchmarks/` or `tests/`. Every import is counted, function-level and `TYPE_CHECKING` ones too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

from tests.conftest import ROOT

LAYERS = ("main", "web", "tasks", "jobs", "providers", ("config", "logs", "errors"))
TOOLING = ("local", "ops", "benchmarks", "tests")


def layer_of(module: str) -> int | None:
    top = module.split(".")[0]
    for index, layer in enumerate(LAYERS):
        if top == layer or (isinstance(layer, tuple) and top in layer):
            return index
    return None


def shipped_modules() -> dict[str, Path]:
    """Module name -> file, for main.py, the bottom modules and the four packages."""
    files = [ROOT / f"{name}.py" for name in ("main", "config", "logs", "errors")]
    for package in ("web", "tasks", "jobs", "providers"):
        files += sorted((ROOT / package).rglob("*.py"))
    return {".".join(f.relative_to(ROOT).with_suffix("").parts): f for f in files}


def imports_of(path: Path) -> list[tuple[int, str]]:
    """(line, imported module) of every import statement in the file, relative ones resolved away."""
    found = []
    for node in ast.walk(ast.parse(path.read_text(), filename=str(path))):
        if isinstance(node, ast.Import):
            found += [(node.lineno, alias.name) for alias in node.names]
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.append((node.lineno, node.module))
    return found


def upward_imports(modules: dict[str, Path]) -> list[str]:
    problems = []
    for name, path in modules.items():
        own = layer_of(name)
        for line, imported in imports_of(path):
            target = layer_of(imported)
            if imported.split(".")[0] in TOOLING:
                problems.append(f"{name}:{line} imports tooling {imported}")
            elif target is not None and own is not None and target < own:
                problems.append(f"{name}:{line} imports {imported}, a layer above it")
    return problems


def test_every_shipped_module_is_in_a_layer():
    assert all(layer_of(name) is not None for name in shipped_modules())


def test_shipped_code_imports_only_downwards_and_never_tooling():
    assert upward_imports(shipped_modules()) == []


@pytest.mark.parametrize(
    ("module", "source", "problem"),
    [
        ("jobs.bad", "from web.http import ApiError\n", "a layer above it"),
        ("providers.bad", "import tasks.queue\n", "a layer above it"),
        ("tasks.bad", "def f():\n    from local.tokens import TokenIssuer\n", "imports tooling"),
    ],
)
def test_the_check_catches_an_upward_or_tooling_import(tmp_path, module, source, problem):
    path = tmp_path / "bad.py"
    path.write_text(source)
    found = upward_imports({module: path})
    assert len(found) == 1
    assert problem in found[0]
