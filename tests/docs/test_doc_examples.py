"""The examples of README.md and docs/*.md, run or parsed so that they cannot rot.

* Every ``python`` block runs: the blocks of one file in order, in one namespace, in a
  temporary working directory, with ``NEURALL_NO_PROGRESS=1``, one torch thread, and the
  global registries (models, layouts, NIR mappings, targets, robustness transforms)
  restored afterwards. A block opts out only with the first line
  ``# doc-example: skip (reason)``; skipped blocks are counted and listed in a warning.
* Every ``neurall ...`` command of ``bash``/``sh``/``shell``/``console`` blocks (also
  ``python -m neurall_neuro.cli.main ...`` and ``torchrun ... -m neurall_neuro.cli.main``)
  is parsed by the real argparse parser, without running it; ``make`` lines must name
  targets of the Makefile.
* Relative links of the documents point at files and headings that exist, and
  ``docs/index.md`` links every page.

Helpers: ``tests/docs/doc_blocks.py``.
"""

from __future__ import annotations

import importlib.util
import re
import sys
import time
import types
import warnings
from pathlib import Path

import pytest
import torch
from torch import nn

ROOT = Path(__file__).resolve().parents[2]

_spec = importlib.util.spec_from_file_location(
    "doc_blocks", Path(__file__).with_name("doc_blocks.py")
)
doc_blocks = importlib.util.module_from_spec(_spec)
sys.modules.setdefault("doc_blocks", doc_blocks)  # dataclasses look their module up
_spec.loader.exec_module(doc_blocks)

DOC_FILES = [p for p in (ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))) if p.is_file()]


class DocExampleSkipped(UserWarning):
    """Documentation example blocks that are not executed (each says why)."""


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


def _python_blocks(path: Path) -> list:
    return [b for b in doc_blocks.fenced_blocks(path) if b.lang in ("python", "py")]


def _commands(path: Path) -> list:
    return [c for b in doc_blocks.fenced_blocks(path) for c in doc_blocks.shell_commands(b)]


PY_FILES = [p for p in DOC_FILES if _python_blocks(p)]
SH_FILES = [p for p in DOC_FILES if _commands(p)]


def _registries() -> list:
    """The library's global registries (examples may register models, layouts, ...)."""
    from conversion.model_exporters import MODEL_EXPORTERS, find_model_exporter
    from conversion.nir_mappings import MODULE_MAPPINGS
    from energy.counting_rules import MODULE_RULES, ROLES
    from energy.torch_counter import OpCounter
    from hw_targets.registry import TARGETS, list_targets
    from neurall_neuro.data.layouts import LAYOUTS
    from neurall_neuro.data.preprocess import ROBUSTNESS_TRANSFORMS
    from neurall_neuro.models.registry import MODELS

    # Import the built-ins first, so that restoring keeps them.
    list_targets()
    find_model_exporter(nn.Identity())
    OpCounter(nn.Identity())
    return [
        MODELS,
        LAYOUTS,
        ROBUSTNESS_TRANSFORMS,
        MODULE_MAPPINGS,
        TARGETS,
        MODEL_EXPORTERS,
        MODULE_RULES,
        ROLES,
    ]


@pytest.fixture
def doc_sandbox(tmp_path: Path, monkeypatch: pytest.MonkeyPatch):
    """A temporary working directory, quiet progress, one thread, registries restored."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    monkeypatch.setenv("MPLBACKEND", "Agg")
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    torch.manual_seed(0)
    registries = _registries()
    saved = [dict(r._items) for r in registries]
    try:
        yield tmp_path
    finally:
        torch.set_num_threads(threads)
        for registry, items in zip(registries, saved, strict=True):
            registry._items.clear()
            registry._items.update(items)


@pytest.mark.parametrize("path", PY_FILES, ids=_rel)
def test_python_examples_run(path: Path, doc_sandbox: Path) -> None:
    blocks = _python_blocks(path)
    runnable = [b for b in blocks if b.skip_reason is None]
    module = types.ModuleType(f"doc_example_{path.stem}")  # a real module: dataclasses work
    sys.modules[module.__name__] = module
    start = time.perf_counter()
    try:
        doc_blocks.run_python_blocks(runnable, module.__dict__)
    finally:
        del sys.modules[module.__name__]
    print(
        f"{_rel(path)}: {len(runnable)} block(s) ran in {time.perf_counter() - start:.1f} s, "
        f"{len(blocks) - len(runnable)} skipped"
    )


def test_skipped_python_blocks_say_why_and_are_listed() -> None:
    skipped = [b for p in DOC_FILES for b in _python_blocks(p) if b.skip_reason is not None]
    unexplained = [b.where for b in skipped if not b.skip_reason]
    assert not unexplained, f"skip markers without a reason: {unexplained}"
    listing = "; ".join(f"{b.where} ({b.skip_reason})" for b in skipped)
    print(f"{len(skipped)} python example block(s) skipped: {listing or '-'}")
    if skipped:
        warnings.warn(
            f"{len(skipped)} documentation example block(s) not executed: {listing}",
            DocExampleSkipped,
            stacklevel=1,
        )


@pytest.mark.parametrize("path", SH_FILES, ids=_rel)
def test_shell_commands_parse(path: Path) -> None:
    targets = doc_blocks.makefile_targets(ROOT / "Makefile")
    errors = []
    for command in _commands(path):
        if command.program == "neurall":
            problem = doc_blocks.neurall_parse_error(command.argv)
            problems = [problem] if problem else []
        else:
            problems = doc_blocks.make_target_errors(command, targets)
        errors += [f"{command.where}: `{command.text.strip()}`: {p}" for p in problems]
    assert not errors, "documented commands that do not parse:\n" + "\n".join(errors)


def test_the_documents_contain_commands() -> None:
    """Guard against a scanner that silently finds nothing."""
    commands = [c for p in DOC_FILES for c in _commands(p) if c.program == "neurall"]
    subcommands = {c.argv[0] for c in commands if c.argv}
    assert len(commands) >= 20, len(commands)
    assert {"data", "train", "evaluate", "explain", "export", "deploy", "energy"} <= subcommands


# ----------------------------------------------------------------------------- links

_LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)(?:\s+\"[^\"]*\")?\)")
_CODE_SPAN = re.compile(r"`+[^`]*`+")


def _prose_lines(path: Path) -> list[str]:
    """The lines of ``path`` outside fenced blocks."""
    out, fence = [], None
    for line in path.read_text(encoding="utf-8").splitlines():
        stripped = line.strip()
        if fence is None and (stripped.startswith("```") or stripped.startswith("~~~")):
            fence = stripped[:3]
            continue
        if fence is not None:
            if stripped.startswith(fence):
                fence = None
            continue
        out.append(line)
    return out


def _anchors(path: Path) -> set[str]:
    """GitHub heading anchors of a Markdown file."""
    seen: dict[str, int] = {}
    anchors = set()
    for line in _prose_lines(path):
        match = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if not match:
            continue
        text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", match[1]).replace("`", "")
        slug = re.sub(r"[^\w\- ]", "", text.lower()).replace(" ", "-")
        count = seen.get(slug, 0)
        seen[slug] = count + 1
        anchors.add(slug if count == 0 else f"{slug}-{count}")
    return anchors


def _links(path: Path) -> list[tuple[str, Path | None, str]]:
    """``(link, target file or None for http/mailto, fragment)`` of every link."""
    found = []
    for line in _prose_lines(path):
        for target in _LINK.findall(_CODE_SPAN.sub("", line)):
            if re.match(r"^[a-z]+:", target):
                found.append((target, None, ""))
                continue
            file_part, _, fragment = target.partition("#")
            resolved = (path.parent / file_part).resolve() if file_part else path
            found.append((target, resolved, fragment))
    return found


def test_relative_links_resolve() -> None:
    errors = []
    for path in DOC_FILES:
        for link, target, fragment in _links(path):
            if target is None:
                continue
            if not target.exists():
                errors.append(f"{_rel(path)}: link {link!r}: {target} does not exist")
            elif fragment and target.suffix == ".md" and fragment not in _anchors(target):
                errors.append(
                    f"{_rel(path)}: link {link!r}: no heading #{fragment} in {target.name}"
                )
    assert not errors, "\n".join(errors)


def test_index_links_every_page() -> None:
    index = ROOT / "docs" / "index.md"
    linked = {target for _, target, _ in _links(index) if target is not None}
    pages = {p.resolve() for p in (ROOT / "docs").glob("*.md") if p.name != "index.md"}
    missing = sorted(p.name for p in pages - linked)
    assert not missing, f"docs/index.md does not link {missing}"


# ----------------------------------------------------------------------------- the checker


def test_the_checks_catch_broken_examples(tmp_path: Path) -> None:
    """A failing example, an unknown flag, a missing make target and a skip marker."""
    md = tmp_path / "broken.md"
    md.write_text(
        "# Broken\n"
        "```python\n"
        "x = 1\n"
        "raise ValueError('boom')\n"
        "```\n"
        "```bash\n"
        "FOO=1 neurall data synth --out DIR --no-such-flag \\\n"
        "    --size 16  # a comment\n"
        "make test && make no-such-target > log.txt 2>&1\n"
        "```\n"
        "```console\n"
        "$ neurall export --checkpoint CKPT --out m.nir --format onnx\n"
        "wrote m.nir\n"
        "```\n"
        "```python\n"
        "# doc-example: skip (needs a GPU)\n"
        "raise SystemExit\n"
        "```\n",
        encoding="utf-8",
    )
    failing, shell, console, skipped = doc_blocks.fenced_blocks(md)

    with pytest.raises(AssertionError, match=r"broken.md:3 failed: ValueError: boom") as info:
        doc_blocks.run_python_blocks([failing], {})
    frame = info.value.__cause__.__traceback__
    while frame.tb_next is not None:
        frame = frame.tb_next
    assert (frame.tb_frame.f_code.co_filename, frame.tb_lineno) == (str(md), 4)

    commands = doc_blocks.shell_commands(shell)
    assert [(c.program, c.line) for c in commands] == [("neurall", 7), ("make", 9), ("make", 9)]
    assert commands[0].argv == ("data", "synth", "--out", "DIR", "--no-such-flag", "--size", "16")
    assert "unrecognized arguments: --no-such-flag" in doc_blocks.neurall_parse_error(
        commands[0].argv
    )
    targets = doc_blocks.makefile_targets(ROOT / "Makefile")
    assert doc_blocks.make_target_errors(commands[1], targets) == []
    assert (
        "no make target 'no-such-target'" in doc_blocks.make_target_errors(commands[2], targets)[0]
    )

    (export,) = doc_blocks.shell_commands(console)
    assert "invalid choice: 'onnx'" in doc_blocks.neurall_parse_error(export.argv)

    assert skipped.skip_reason == "needs a GPU"
    assert failing.skip_reason is None
    assert doc_blocks.neurall_parse_error(("data", "synth", "--out", "DIR")) is None
    assert doc_blocks.neurall_parse_error(("data",)) is not None
