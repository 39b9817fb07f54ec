"""Help texts, ``--debug``, warnings and error messages of the ``neurall`` CLI as a user sees them."""

from __future__ import annotations

import argparse
import ast
import warnings
from pathlib import Path

import pytest

from neurall_neuro.cli import data_cmd
from neurall_neuro.cli.main import CLI_HINTS, build_parser, cli_message, iter_parsers, main

REPO = Path(__file__).resolve().parents[2]
LIBRARY = ("neurall_neuro", "conversion", "hw_targets", "energy")


def all_parsers() -> list[argparse.ArgumentParser]:
    return list(iter_parsers(build_parser()))


def command_parser(*names: str) -> argparse.ArgumentParser:
    wanted = " ".join(("neurall", *names))
    (parser,) = [p for p in all_parsers() if p.prog == wanted]
    return parser


def test_every_option_and_subcommand_has_help() -> None:
    missing = []
    for parser in all_parsers():
        for action in parser._actions:
            if isinstance(action, argparse._HelpAction):
                continue
            if isinstance(action, argparse._SubParsersAction):
                missing += [
                    f"{parser.prog} {choice.dest}"
                    for choice in action._choices_actions
                    if not choice.help
                ]
                continue
            if not action.help or action.help is argparse.SUPPRESS:
                name = "/".join(action.option_strings) or action.dest
                missing.append(f"{parser.prog} {name}")
    assert not missing, f"options without help text: {', '.join(missing)}"


def test_help_is_plain_text() -> None:
    """No reStructuredText markup (double backquotes, ``::``) in any rendered --help."""
    for parser in all_parsers():
        text = parser.format_help()
        assert "``" not in text, f"{parser.prog} --help shows double backquotes"
        assert "::\n" not in text, f"{parser.prog} --help shows a reStructuredText '::'"


def test_train_help_lists_the_registered_models() -> None:
    from neurall_neuro.models.registry import list_models

    text = command_parser("train").format_help()
    assert "list_models()" not in text
    assert all(name in text for name in list_models())


def test_deploy_shows_its_required_options() -> None:
    parser = command_parser("deploy")
    (group,) = [g for g in parser._action_groups if g.title.startswith("required")]
    assert {a.dest for a in group._group_actions} == {"checkpoint", "data"}
    assert "required (unless --list-targets):" in parser.format_help()


def test_required_options_are_marked_in_usage() -> None:
    usage = command_parser("evaluate").format_usage()
    assert "--checkpoint CHECKPOINT" in usage and "[--checkpoint" not in usage


@pytest.mark.parametrize(
    "argv",
    [
        ["--debug", "data", "info", "MISSING"],
        ["data", "--debug", "info", "MISSING"],
        ["data", "info", "MISSING", "--debug"],
    ],
)
def test_debug_is_accepted_anywhere(argv: list[str], tmp_path: Path) -> None:
    from neurall_neuro.errors import DataError

    argv = [str(tmp_path / a) if a == "MISSING" else a for a in argv]
    with pytest.raises(DataError, match="does not exist"):
        main(argv)


def test_without_debug_errors_are_one_line(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    assert main(["data", "info", str(tmp_path / "missing")]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1


def test_warnings_print_as_one_line(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    def warn(args: argparse.Namespace) -> int:
        warnings.warn("pass layer=... to choose", UserWarning, stacklevel=1)
        return 0

    monkeypatch.setattr(data_cmd, "cmd_layouts", warn)  # bound when the parser is built
    with warnings.catch_warnings():
        warnings.simplefilter("always")
        before = warnings.showwarning
        assert main(["data", "layouts"]) == 0
        assert warnings.showwarning is before  # main restores the caller's printer
    err = capsys.readouterr().err
    assert err == "warning: pass layer=... to choose\n"  # data layouts has no --layer


def test_data_warnings_go_through_the_cli_printer(
    tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    from PIL import Image

    for name in ("Benign", "Early", "Pre"):
        (tmp_path / "d" / name).mkdir(parents=True)
        Image.new("RGB", (8, 8)).save(tmp_path / "d" / name / "a.png")
    (tmp_path / "d" / "Pro").mkdir()  # an empty class folder: a DataWarning
    assert main(["data", "info", str(tmp_path / "d")]) == 0
    captured = capsys.readouterr()
    lines = [line for line in captured.err.splitlines() if line]
    assert lines and all(line.startswith("warning: ") for line in lines), captured.err
    assert "Warning:" not in captured.err and ".py:" not in captured.err


# ----------------------------------------------------------------- messages


def library_strings() -> set[str]:
    """Every string literal (and literal part of an f-string) of the library packages."""
    found: set[str] = set()
    for package in LIBRARY:
        for path in (REPO / package).rglob("*.py"):
            for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
                if isinstance(node, ast.Constant) and isinstance(node.value, str):
                    found.add(node.value)
    return found


def test_cli_hints_match_library_messages_and_real_flags() -> None:
    strings = library_strings()
    options = {o for p in all_parsers() for o in p._option_string_actions}
    for hint in CLI_HINTS:
        assert any(hint.python in s for s in strings), (
            f"no library message contains {hint.python!r}"
        )
        assert hint.flag is None or hint.flag in options, hint
        assert hint.flag is None or hint.flag in hint.cli, hint


def test_cli_message_shows_the_flag_of_the_running_command() -> None:
    explain, deploy, evaluate = (command_parser(n) for n in ("explain", "deploy", "evaluate"))
    message = "cannot choose a Grad-CAM layer: the model has no Conv2d; pass layer=..."
    assert cli_message(message, explain).endswith("pass --layer NAME")
    mapping = "cannot map classes ['X'] (pass mapping={source: target} to map them explicitly)"
    assert "--map SOURCE=TARGET" in cli_message(mapping, evaluate)
    on_deploy = cli_message(mapping, deploy)  # deploy has no --map
    assert "mapping=" not in on_deploy and "neurall evaluate" in on_deploy
    dt = "the graph stores no dt (metadata['dt']); compile it with dt=..."
    assert "dt=..." not in cli_message(dt, command_parser("energy"))


def test_library_python_hints_become_flags(tmp_path: Path, capsys: pytest.CaptureFixture) -> None:
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "x.txt").write_text("something")
    assert main(["data", "synth", "--out", str(tmp_path / "full"), "--n-per-class", "1"]) == 2
    err = capsys.readouterr().err
    assert "pass --overwrite" in err and "overwrite=True" not in err


@pytest.mark.parametrize("content", [b"", b"just some text\n"])
def test_a_non_checkpoint_says_what_a_checkpoint_is(
    content: bytes, tmp_path: Path, capsys: pytest.CaptureFixture
) -> None:
    path = tmp_path / "model.pt"
    path.write_bytes(content)
    assert main(["export", "--checkpoint", str(path), "--out", str(tmp_path / "m.nir")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: not a neurall checkpoint: {path} (")
    assert "written by neurall train / save_checkpoint" in err and err.count("\n") == 1
    assert ("empty" in err) == (content == b"")
