"""The one-way package dependencies of docs/architecture.md, checked on the source.

``neurall_neuro`` (outside ``neurall_neuro/cli/``) imports none of ``conversion``,
``hw_targets``, ``energy``; ``conversion`` imports neither ``hw_targets`` nor ``energy``;
``hw_targets`` does not import ``energy``. Imports are read with :mod:`ast`, so imports
inside functions (lazy imports) and ``importlib.import_module("...")`` / ``__import__``
calls with a literal name count too.
"""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


def imported_modules(path: Path) -> set[str]:
    """Absolute module names imported anywhere in the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    names: set[str] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            names.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            names.add(node.module)
        elif isinstance(node, ast.Call) and node.args:
            func = node.func
            called = func.attr if isinstance(func, ast.Attribute) else getattr(func, "id", "")
            first = node.args[0]
            if (
                called in ("import_module", "__import__")
                and isinstance(first, ast.Constant)
                and isinstance(first.value, str)
            ):
                names.add(first.value)
    return names


def violations(package: str, forbidden: set[str], exclude: str | None = None) -> list[str]:
    """``file: module`` for every import of a ``forbidden`` top-level package."""
    found = []
    for path in sorted((ROOT / package).rglob("*.py")):
        rel = path.relative_to(ROOT).as_posix()
        if exclude and rel.startswith(exclude):
            continue
        for name in sorted(imported_modules(path)):
            if name.split(".")[0] in forbidden:
                found.append(f"{rel}: imports {name}")
    return found


def test_neurall_neuro_imports_no_other_package_outside_the_cli() -> None:
    found = violations(
        "neurall_neuro", {"conversion", "hw_targets", "energy"}, exclude="neurall_neuro/cli/"
    )
    assert not found, "\n".join(found)


def test_conversion_imports_neither_hw_targets_nor_energy() -> None:
    found = violations("conversion", {"hw_targets", "energy"})
    assert not found, "\n".join(found)


def test_hw_targets_does_not_import_energy() -> None:
    found = violations("hw_targets", {"energy"})
    assert not found, "\n".join(found)


@pytest.mark.parametrize(
    "source",
    [
        "from conversion.nir_export import to_nir\n",
        "def f():\n    import energy.report\n",
        "import importlib\nimportlib.import_module('hw_targets.registry')\n",
    ],
)
def test_the_check_sees_top_level_lazy_and_dynamic_imports(tmp_path: Path, source: str) -> None:
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    tops = {name.split(".")[0] for name in imported_modules(path)}
    assert tops & {"conversion", "energy", "hw_targets"}
