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


#: Modules and class names of concrete models: generic export, counting and target code
#: must not know them (model-specific code lives in the model rule / mapping files).
MODEL_MODULES = {
    "neurall_neuro.models.neurallnet",
    "neurall_neuro.models.se_cnn",
    "neurall_neuro.models.inference",
}
MODEL_CLASSES = {
    "NeurAllNet",
    "NeurAllNetConfig",
    "InferenceNeurAllNet",
    "SECNN",
    "ResidualSEStage",
}
#: Files named as model rules or mappings (the only ones allowed to import models).
MODEL_RULE_FILES = ("conversion/mappings/", "energy/rules_")


def imported_names(path: Path) -> set[str]:
    """Names imported with ``from ... import name`` anywhere in the file at ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    return {
        alias.name
        for node in ast.walk(tree)
        if isinstance(node, ast.ImportFrom)
        for alias in node.names
    }


def test_generic_export_counting_and_target_code_imports_no_concrete_model() -> None:
    found = []
    for package in ("conversion", "energy", "hw_targets"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel.startswith(MODEL_RULE_FILES):
                continue
            found += [f"{rel}: imports {m}" for m in sorted(imported_modules(path) & MODEL_MODULES)]
            found += [f"{rel}: imports {n}" for n in sorted(imported_names(path) & MODEL_CLASSES)]
    assert not found, "\n".join(found)


def test_the_model_import_check_sees_modules_and_names(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(
        "def f():\n    from neurall_neuro.models.registry import NeurAllNet\n"
        "import neurall_neuro.models.se_cnn\n",
        encoding="utf-8",
    )
    assert imported_names(path) & MODEL_CLASSES == {"NeurAllNet"}
    assert imported_modules(path) & MODEL_MODULES == {"neurall_neuro.models.se_cnn"}


# ----------------------------------------------------------------------------- Loihi numbers
# Every Loihi limit, width and shift is a named constant of hw_targets/loihi/spec.py; the
# rest of hw_targets, conversion and energy use the names, never the numbers.

#: Numbers that are unmistakably Loihi's (as integer or float literals, or constant
#: expressions such as ``(1 << 23) - 1``; a leading minus sign counts too).
LOIHI_VALUES = {
    4095: "12-bit maximum of du, dv and the bias mantissa",
    4096: "2**12: decay unity, the bias mantissa minimum",
    8191: "13-bit maximum",
    131071: "17-bit threshold maximum",
    131072: "2**17",
    2**23 - 1: "the 24-bit state's maximum (v clip)",
    2**23: "the 24-bit state's limit",
    2**24: "the 24-bit wrap",
}
#: Shift amounts that are Loihi's, in ``x << n`` / ``x >> n`` with a literal ``n``.
LOIHI_SHIFTS = {6: "the a_in / threshold alignment", 12: "the decay shift"}
#: Numbers in LOIHI_VALUES that mean something else in one file: (file, value) -> reason.
NOT_LOIHI = {
    ("energy/tensor_stats.py", 2**24): "float32 holds every integer up to 2**24 exactly",
}
LOIHI_SPEC = "hw_targets/loihi/spec.py"

_FOLD = {
    ast.Add: lambda a, b: a + b,
    ast.Sub: lambda a, b: a - b,
    ast.Mult: lambda a, b: a * b,
    ast.Pow: lambda a, b: a**b,
    ast.LShift: lambda a, b: a << b,
    ast.RShift: lambda a, b: a >> b,
}


def constant_int(node: ast.AST) -> int | None:
    """The integral value of a constant expression node (``4095``, ``4096.0``, ``-4096``,
    ``(1 << 23) - 1``, ``2**24``), or None if it is not one."""
    if isinstance(node, ast.Constant) and type(node.value) in (int, float):
        value = float(node.value)
        return int(node.value) if value.is_integer() else None
    if isinstance(node, ast.UnaryOp) and isinstance(node.op, ast.USub):
        inner = constant_int(node.operand)
        return None if inner is None else -inner
    if isinstance(node, ast.BinOp) and type(node.op) in _FOLD:
        left, right = constant_int(node.left), constant_int(node.right)
        if left is None or right is None:
            return None
        if isinstance(node.op, (ast.Pow, ast.LShift, ast.RShift)) and not 0 <= right <= 64:
            return None
        return _FOLD[type(node.op)](left, right)
    return None


def loihi_literals(path: Path) -> list[tuple[int, int | None, str]]:
    """``(line, value, what)`` for every Loihi number or Loihi shift spelt out in ``path``
    (one entry per line; ``value`` is None for a shift)."""
    tree = ast.parse(path.read_text(encoding="utf-8"), filename=str(path))
    found: dict[int, tuple[int | None, str]] = {}
    for node in ast.walk(tree):
        if isinstance(node, (ast.BinOp, ast.AugAssign)) and isinstance(
            node.op, (ast.LShift, ast.RShift)
        ):
            amount = constant_int(node.right if isinstance(node, ast.BinOp) else node.value)
            if amount in LOIHI_SHIFTS:
                found.setdefault(node.lineno, (None, f"shift by {amount} ({LOIHI_SHIFTS[amount]})"))
        if isinstance(node, (ast.Constant, ast.UnaryOp, ast.BinOp)):
            value = constant_int(node)
            if value is not None and abs(value) in LOIHI_VALUES:
                found.setdefault(node.lineno, (abs(value), f"{value} ({LOIHI_VALUES[abs(value)]})"))
    return [(line, value, what) for line, (value, what) in sorted(found.items())]


def test_loihi_numbers_are_named_only_in_the_spec() -> None:
    found = []
    for package in ("hw_targets", "conversion", "energy"):
        for path in sorted((ROOT / package).rglob("*.py")):
            rel = path.relative_to(ROOT).as_posix()
            if rel == LOIHI_SPEC:
                continue
            found += [
                f"{rel}:{line}: {what}"
                for line, value, what in loihi_literals(path)
                if (rel, value) not in NOT_LOIHI
            ]
    message = f"Loihi numbers outside {LOIHI_SPEC} (use its constants):\n" + "\n".join(found)
    assert not found, message
    assert loihi_literals(ROOT / LOIHI_SPEC), "the spec names the numbers the check looks for"


@pytest.mark.parametrize(
    "source",
    [
        "DU_MAX = 4095\n",
        "act = a_in << 6\n",
        "def decay(x, k):\n    return x * k >> 12\n",
        "def f(x):\n    x <<= 6\n    return x\n",
        "V_MAX = (1 << 23) - 1\n",
        "low = -4096\n",
        "alpha = dv / 4096.0\n",
        "wrap = 2**24\n",
    ],
)
def test_the_check_sees_planted_loihi_literals(tmp_path: Path, source: str) -> None:
    path = tmp_path / "module.py"
    path.write_text(source, encoding="utf-8")
    assert loihi_literals(path)


def test_the_loihi_check_ignores_unrelated_numbers(tmp_path: Path) -> None:
    path = tmp_path / "module.py"
    path.write_text(
        "CHANNELS = (32, 64, 128, 256)\nSEED_MASK = 2**63 - 1\nx = 5 << 2\n"
        "pixels = 255.0\nCACHE = 4097\nbits = 6\nsteps = 12\n",
        encoding="utf-8",
    )
    assert loihi_literals(path) == []
