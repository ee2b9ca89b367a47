"""The layering rules of design.md / style.md §10, checked by walking every module's imports.

A lower layer never imports a higher one. Where the code departs from the table in style.md, the rule
here says so and design.md's "Departures" section says why.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parents[1] / "softswitch"

# module prefix -> softswitch subpackages/modules it must not import
FORBIDDEN: dict[str, tuple[str, ...]] = {
    "softswitch.sip": ("acd", "media", "recording", "store", "control", "cli", "config", "callflow", "app"),
    "softswitch.media": ("sip", "acd", "store", "control", "cli", "config", "callflow", "app"),
    "softswitch.recording": ("sip", "acd", "store", "control", "cli", "callflow", "app"),
    "softswitch.acd": (
        "sip",
        "media",
        "recording",
        "store",
        "control",
        "cli",
        "config",
        "callflow",
        "app",
        "prompts",
    ),
    # callflow reaches the store only through the plain records it hands up (store.records: no SQL).
    "softswitch.callflow": ("control", "cli", "app", "config"),
    "softswitch.store": ("sip", "acd", "media", "recording", "callflow", "control", "cli", "app"),
    "softswitch.control": ("sip", "media", "recording", "callflow", "cli", "app"),
    "softswitch.cli": ("sip", "media", "recording", "callflow", "app"),
}
# store.records is the shared vocabulary of plain dataclasses; callflow may use it, not the rest of store.
# `softswitch serve` is the command that starts the app.
ALLOWED_EXCEPTIONS = {
    ("softswitch.callflow", "softswitch.store.records"),
    ("softswitch.cli", "softswitch.app"),
}


def modules() -> list[tuple[str, Path]]:
    out = []
    for path in sorted(PACKAGE.rglob("*.py")):
        rel = path.relative_to(PACKAGE.parent).with_suffix("")
        parts = list(rel.parts)
        if parts[-1] == "__init__":
            parts = parts[:-1]
        out.append((".".join(parts), path))
    return out


def imported(path: Path, module: str) -> set[str]:
    tree = ast.parse(path.read_text(), filename=str(path))
    names: set[str] = set()
    package = module if path.name == "__init__.py" else module.rsplit(".", 1)[0]
    typing_only = {
        id(child)
        for node in ast.walk(tree)
        if isinstance(node, ast.If) and "TYPE_CHECKING" in ast.unparse(node.test)
        for child in ast.walk(node)
    }
    for node in ast.walk(tree):
        if id(node) in typing_only:
            continue  # imports for type annotations only do not couple the layers at run time
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package.split(".")
                base = base[: len(base) - node.level + 1]
                target = ".".join([*base, node.module] if node.module else base)
            else:
                target = node.module or ""
            names.add(target)
    return {name for name in names if name.startswith("softswitch")}


@pytest.mark.parametrize(("module", "path"), modules(), ids=[m for m, _ in modules()])
def test_module_respects_the_layering(module: str, path: Path) -> None:
    rule = next((prefix for prefix in FORBIDDEN if module == prefix or module.startswith(prefix + ".")), None)
    if rule is None:
        return  # app.py, prompts.py, logs.py, tlscert.py and friends may import what they need
    broken = []
    for name in imported(path, module):
        if (rule, name) in ALLOWED_EXCEPTIONS or name == rule or name.startswith(rule + "."):
            continue
        for banned in FORBIDDEN[rule]:
            full = f"softswitch.{banned}"
            if name == full or name.startswith(full + "."):
                broken.append(name)
    assert not broken, f"{module} imports {sorted(broken)}, which its layer may not (design.md)"


def test_acd_imports_only_the_standard_library() -> None:
    import sys

    for path in sorted((PACKAGE / "acd").rglob("*.py")):
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                roots = [alias.name.split(".")[0] for alias in node.names]
            elif isinstance(node, ast.ImportFrom) and not node.level:
                roots = [(node.module or "").split(".")[0]]
            else:
                continue
            for root in roots:
                assert root in sys.stdlib_module_names or root == "softswitch", f"{path.name} imports {root}"
