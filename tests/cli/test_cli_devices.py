"""One ``--device`` rule (``neurall_neuro.devices``) for every command that has the option.

A bad device fails while the command line is parsed: one line, exit status 2, no
traceback, nothing read and no output folder created.
"""

from __future__ import annotations

import argparse
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from neurall_neuro.cli.main import build_parser, iter_parsers
from neurall_neuro.devices import (
    DeviceError,
    add_device_argument,
    device_option,
    resolve_device,
)

REPO = Path(__file__).resolve().parents[2]


def command_argv(command: str, tmp: Path) -> tuple[list[str], Path]:
    """Arguments that satisfy ``command``'s parser (paths that do not exist), and the
    output path the command would create."""
    out = tmp / "out"
    missing_ckpt, missing_data = str(tmp / "missing.pt"), str(tmp / "missing-data")
    argv = {
        "demo": ["demo", "--quick", "--out", str(out)],
        "train": ["train", "--model", "neurallnet", "--data", missing_data, "--out", str(out)],
        "evaluate": ["evaluate", "--checkpoint", missing_ckpt, "--data", missing_data,
                     "--out", str(out)],
        "explain": ["explain", "--checkpoint", missing_ckpt, "--data", missing_data,
                    "--out", str(out)],
        "deploy": ["deploy", "--checkpoint", missing_ckpt, "--data", missing_data,
                   "--out", str(out)],
        "energy": ["energy", "--snn", missing_ckpt, "--random", "2", "--output", str(out)],
    }[command]  # fmt: skip
    return argv, out


def commands_with_device() -> list[str]:
    parser = build_parser()
    return sorted(
        p.prog.removeprefix("neurall ")
        for p in iter_parsers(parser)
        if "--device" in p._option_string_actions
    )


def test_every_command_with_device_is_covered() -> None:
    assert commands_with_device() == sorted(
        ["demo", "train", "evaluate", "explain", "deploy", "energy"]
    )


SPECS = [
    pytest.param(
        "cuda",
        marks=pytest.mark.skipif(torch.cuda.is_available(), reason="CUDA is available here"),
    ),
    "cuda:99",
    "tpu",
]


@pytest.mark.parametrize("spec", SPECS)
@pytest.mark.parametrize("command", ["demo", "train", "evaluate", "explain", "deploy", "energy"])
def test_bad_device_fails_in_one_line(command: str, spec: str, tmp_path: Path) -> None:
    argv, out = command_argv(command, tmp_path)
    env = {**os.environ, "NEURALL_DEBUG": "0", "NEURALL_NO_PROGRESS": "1"}
    proc = subprocess.run(
        [sys.executable, "-m", "neurall_neuro.cli.main", *argv, "--device", spec],
        capture_output=True, text=True, cwd=tmp_path, env=env, timeout=300,
    )  # fmt: skip
    lines = proc.stderr.strip().splitlines()
    assert proc.returncode == 2, proc.stderr
    assert len(lines) == 1 and "Traceback" not in proc.stderr, proc.stderr
    assert lines[0].startswith(f"error: --device {spec}: "), lines[0]
    assert "cpu" in lines[0] and "auto" in lines[0]  # the valid choices
    assert proc.stdout == ""
    assert not out.exists() and not (tmp_path / "runs").exists()


def test_debug_shows_the_device_traceback() -> None:
    from neurall_neuro.cli.main import main

    with pytest.raises(DeviceError, match="--device tpu: not a device"):
        main(["energy", "--random", "2", "--snn", "x.pt", "--device", "tpu", "--debug"])


# ----------------------------------------------------------------- the rule itself


def test_auto_and_cpu() -> None:
    expected = "cuda" if torch.cuda.is_available() else "cpu"
    assert resolve_device("auto") == torch.device(expected)
    assert resolve_device(" AUTO ") == torch.device(expected)
    assert resolve_device("cpu") == torch.device("cpu")
    assert resolve_device(torch.device("cpu")) == torch.device("cpu")


@pytest.mark.parametrize("spec", ["gpu", "tpu", "mps", "cuda:x", "cpu:0", "auto:1", "", "cuda:"])
def test_malformed_specs(spec: str) -> None:
    with pytest.raises(DeviceError, match="not a device; valid options: auto, cpu, cuda, cuda:N"):
        resolve_device(spec)


def test_cuda_without_cuda(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    for spec in ("cuda", "cuda:0"):
        with pytest.raises(DeviceError, match=r"CUDA is not available .* use --device cpu or auto"):
            resolve_device(spec)
    assert resolve_device("auto") == torch.device("cpu")


def test_cuda_index_out_of_range(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 1)
    assert resolve_device("auto") == torch.device("cuda")
    assert resolve_device("cuda") == torch.device("cuda")
    assert resolve_device("CUDA:0") == torch.device("cuda", 0)
    with pytest.raises(DeviceError, match=r"cuda:7: this machine has 1 CUDA device \(cuda:0\)"):
        resolve_device("cuda:7")
    monkeypatch.setattr(torch.cuda, "device_count", lambda: 2)
    with pytest.raises(DeviceError, match=r"has 2 CUDA devices \(cuda:0 \.\. cuda:1\)"):
        resolve_device("cuda:2")
    assert device_option("cuda:1") == "cuda:1"


def test_device_error_is_not_swallowed_by_argparse() -> None:
    """argparse turns ValueErrors of a ``type`` into a usage message; DeviceError must reach
    neurall's main, which prints it as one line."""
    assert not issubclass(DeviceError, ValueError | TypeError | argparse.ArgumentTypeError)
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    assert parser.parse_args([]).device in ("cpu", "cuda")  # the default "auto", resolved
    with pytest.raises(DeviceError):
        parser.parse_args(["--device", "gpu"])


def test_parsing_does_not_depend_on_the_machine(
    monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture
) -> None:
    """``--device cuda:1`` parses everywhere (documented command lines stay valid); main
    rejects it before the command runs where the device does not exist."""
    from neurall_neuro.cli.main import main

    monkeypatch.setattr(torch.cuda, "is_available", lambda: False)
    parser = argparse.ArgumentParser()
    add_device_argument(parser)
    assert parser.parse_args(["--device", "CUDA:1"]).device == "cuda:1"
    assert parser.parse_args([]).device == "cpu"
    assert main(["energy", "--random", "2", "--snn", "x.pt", "--device", "cuda:1"]) == 2
    assert capsys.readouterr().err.startswith("error: --device cuda:1: CUDA is not available")


def test_suppressed_default_leaves_the_recipe_value() -> None:
    parser = argparse.ArgumentParser()
    add_device_argument(parser, default=argparse.SUPPRESS)
    assert not hasattr(parser.parse_args([]), "device")
    assert parser.parse_args(["--device", "cpu"]).device == "cpu"
