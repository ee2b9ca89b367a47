"""Package-level promises of softswitch.media: its import rules, its public names, its docstring examples."""

from __future__ import annotations

import ast
import doctest
import importlib
import pkgutil
import sys
from pathlib import Path

import pytest

import softswitch.media

MEDIA_DIR = Path(softswitch.media.__file__).parent
MODULES = sorted(f"softswitch.media.{m.name}" for m in pkgutil.iter_modules([str(MEDIA_DIR)]))
ALLOWED_THIRD_PARTY = {"numpy"}
LAZY_ONLY = {"soundfile"}  # decoded once at config load, imported inside player.load_sound only


def _imports(tree: ast.AST) -> list[tuple[str, bool]]:
    """(top-level module name, imported at module level?) for every import in `tree`."""
    found: list[tuple[str, bool]] = []

    def visit(node: ast.AST, top: bool) -> None:
        for child in ast.iter_child_nodes(node):
            inner = top and not isinstance(child, ast.FunctionDef | ast.AsyncFunctionDef | ast.ClassDef)
            if isinstance(child, ast.Import):
                found.extend((a.name.split(".")[0], top) for a in child.names)
            elif isinstance(child, ast.ImportFrom) and child.module and child.level == 0:
                found.append((child.module.split(".")[0], top))
                if child.module.startswith("softswitch."):
                    found.append((child.module, top))
            visit(child, inner)

    visit(tree, True)
    return found


@pytest.mark.parametrize("path", sorted(MEDIA_DIR.glob("*.py")), ids=lambda p: p.name)
def test_media_imports_only_stdlib_numpy_and_itself(path: Path) -> None:
    for name, top_level in _imports(ast.parse(path.read_text())):
        if name == "softswitch" or name in sys.stdlib_module_names or name in ALLOWED_THIRD_PARTY:
            continue
        if name.startswith("softswitch."):
            assert name.startswith("softswitch.media."), f"{path.name} imports {name}"
            continue
        assert name in LAZY_ONLY and not top_level, f"{path.name} imports {name}"


@pytest.mark.parametrize("module", MODULES)
def test_docstring_examples_hold(module: str) -> None:
    result = doctest.testmod(importlib.import_module(module), optionflags=doctest.ELLIPSIS)
    assert result.failed == 0


@pytest.mark.parametrize("module", MODULES)
def test_every_module_says_what_it_implements_and_exports_its_names(module: str) -> None:
    mod = importlib.import_module(module)
    assert mod.__doc__ and len(mod.__doc__) > 200
    for name in getattr(mod, "__all__", []):
        assert hasattr(mod, name), f"{module}.__all__ names missing {name}"


def test_package_exports_resolve() -> None:
    for name in softswitch.media.__all__:
        assert getattr(softswitch.media, name) is not None
