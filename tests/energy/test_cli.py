"""``neurall energy`` end to end on tiny checkpoints (random images and an image folder)."""

from __future__ import annotations

import argparse
import io
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from neurall_neuro.cli import energy_cmd
from neurall_neuro.errors import ConfigError
from neurall_neuro.models.checkpoint import save_checkpoint

CLASSES = ["Benign", "Early", "Pre", "Pro"]


def energy(*argv: str) -> int:
    """Run the subcommand as ``neurall energy ARGV`` (through its own parser)."""
    parser = argparse.ArgumentParser(prog="neurall")
    energy_cmd.register(parser.add_subparsers())
    args = parser.parse_args(["energy", *argv])
    return args.func(args)


@pytest.fixture
def checkpoints(tmp_path: Path, tiny_snn, tiny_cnn) -> tuple[Path, Path]:
    snn = save_checkpoint(tmp_path / "snn.pt", tiny_snn, CLASSES, {"size": 16, "clahe": False})
    cnn = save_checkpoint(tmp_path / "cnn.pt", tiny_cnn, CLASSES, {"size": 16, "clahe": False})
    return snn, cnn


def test_json_report_and_plot(checkpoints, tmp_path: Path, monkeypatch) -> None:
    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    snn, cnn = checkpoints
    out, plot = tmp_path / "r.json", tmp_path / "r.png"
    code = energy("--snn", str(snn), "--cnn", str(cnn), "--random", "3", "--profiles", "loihi,45nm-int8",
                  "--format", "json", "--output", str(out), "--plot", str(plot))  # fmt: skip
    assert code == 0 and plot.read_bytes()[:4] == b"\x89PNG"
    data = json.loads(out.read_text())
    assert data["snn"]["model"] == "neurallnet" and data["cnn"]["model"] == "se-cnn"
    assert data["snn"]["samples"] == 3 and "random" in data["data"]
    assert [r["snn_profile"] for r in data["ratios"]] == ["loihi", "45nm-int8"]


def test_image_folder_data_and_markdown(checkpoints, tmp_path: Path, capsys, monkeypatch) -> None:
    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    root = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (root / name).mkdir(parents=True)
        for i in range(2):
            Image.fromarray(rng.integers(0, 255, (20, 20, 3), dtype=np.uint8)).save(
                root / name / f"{i}.png"
            )
    snn, _ = checkpoints
    assert energy("--snn", str(snn), "--data", str(root), "--n", "5", "--batch-size", "2",
                  "--profiles", "truenorth", "--format", "md") == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "## SNN: neurallnet" in text and "| samples counted | 5 |" in text


def test_nir_graph_with_profile_file(
    checkpoints, tiny_snn, tmp_path: Path, capsys, monkeypatch
) -> None:
    from conversion.nir_export import export_nir

    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    graph = export_nir(tiny_snn, tmp_path / "snn.nir")
    assert graph is not None
    profile = tmp_path / "p.toml"
    profile.write_text(
        '[profiles.cheap]\nkind = "neuromorphic"\nword_bits = 8\nhost = "45nm-int8"\nmemory_included = true\n'
        '[profiles.cheap.ops]\nac = { pj = 1.0, source = "assumption" }\n'
        'neuron_update = { pj = 1.0, source = "assumption" }\n'
    )
    _, cnn = checkpoints
    assert energy("--nir", str(tmp_path / "snn.nir"), "--cnn", str(cnn), "--random", "2",
                  "--profile-file", str(profile), "--profiles", "cheap,45nm-int8", "--format", "csv") == 0  # fmt: skip
    text = capsys.readouterr().out
    assert "energy,snn,cheap" in text and "ratio,snn/cnn,cheap/45nm-int8" in text


def test_usage_errors(checkpoints) -> None:
    snn, _ = checkpoints
    with pytest.raises(ConfigError, match="exactly one of --data"):
        energy("--snn", str(snn))
    with pytest.raises(ConfigError, match="at least one of"):
        energy("--random", "2")
    assert energy("--list-profiles") == 0


def test_registered_in_the_main_cli() -> None:
    from neurall_neuro.cli.main import COMMAND_MODULES

    assert "energy" in COMMAND_MODULES
    torch.manual_seed(0)


REPO = Path(__file__).resolve().parents[2]
SHIPPED_SNN = REPO / "pretrained" / "neurallnet-aria.pt"
SHIPPED_CNN = REPO / "pretrained" / "se-cnn-aria.pt"
needs_shipped = pytest.mark.skipif(
    not (SHIPPED_SNN.exists() and SHIPPED_CNN.exists()), reason="shipped checkpoints missing"
)


def neurall(*argv: str) -> subprocess.CompletedProcess[str]:
    """``neurall ARGV`` in a subprocess, stdout and stderr pipes (not terminals)."""
    env = {**os.environ, "NEURALL_NO_PROGRESS": "1", "COLUMNS": "80"}
    return subprocess.run(
        [sys.executable, "-m", "neurall_neuro.cli.main", *argv],
        cwd=REPO,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


@needs_shipped
def test_cli_refuses_swapped_models() -> None:
    result = neurall(
        "energy", "--snn", str(SHIPPED_CNN), "--cnn", str(SHIPPED_SNN), "--random", "2"
    )
    assert result.returncode == 2, result.stderr
    assert result.stdout == "" and result.stderr.count("\n") == 1, result.stderr
    assert "'se-cnn' is a non-spiking model" in result.stderr and "--cnn" in result.stderr
    result = neurall("energy", "--cnn", str(SHIPPED_SNN), "--random", "2")
    assert result.returncode == 2 and result.stderr.count("\n") == 1, result.stderr
    assert "'neurallnet' is a spiking model" in result.stderr and "--snn" in result.stderr


@needs_shipped
def test_piped_table_is_plain_and_complete() -> None:
    result = neurall(
        "energy", "--snn", str(SHIPPED_SNN), "--cnn", str(SHIPPED_CNN), "--random", "2"
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout
    assert "…" not in out and "\x1b[" not in out  # no truncated cells, no colour codes
    for cell in ("body.se3.fc1 (+body.se3.squeeze)", "features.stage4.shortcut.conv",
                 "45nm-int8-dram", "SynOps dense", "of which host", "spinnaker2"):  # fmt: skip
        assert cell in out, cell
    # whole assumption sentences on one line each (not folded at 80 columns)
    assert "bias is not a synaptic operation (as NeuroBench)." in out


def test_output_console_is_plain_off_a_terminal() -> None:
    from rich.table import Table

    from neurall_neuro.console import output_console

    buffer = io.StringIO()
    console = output_console(buffer)
    table = Table(title="t")
    table.add_column("layer")
    table.add_column("note")
    table.add_row("features.stage4.shortcut.conv" * 4, "[bold]x[/bold] " + "long text " * 30)
    console.print(table)
    console.print("[red]note:[/red] " + "word " * 60)
    text = buffer.getvalue()
    assert "…" not in text and "\x1b[" not in text
    assert "features.stage4.shortcut.conv" * 4 in text and ("long text " * 30).strip() in text
    assert ("note: " + "word " * 60).strip() in text  # one line, no markup


def test_cli_prints_what_the_python_api_returns(checkpoints, tmp_path: Path, monkeypatch) -> None:
    from conversion.nir_export import export_nir
    from energy.render import to_json
    from energy.report import energy_report
    from neurall_neuro.models.checkpoint import load_checkpoint

    monkeypatch.setenv("NEURALL_NO_PROGRESS", "1")
    snn, cnn = checkpoints
    out = tmp_path / "cli.json"
    assert energy("--snn", str(snn), "--cnn", str(cnn), "--random", "3", "--seed", "5",
                  "--profiles", "loihi,45nm-int8", "--format", "json", "--output", str(out)) == 0  # fmt: skip
    images = torch.rand(3, 3, 16, 16, generator=torch.Generator().manual_seed(5))
    data = "3 uniform random images in [0, 1] (seed 5); not real data"
    report = energy_report(load_checkpoint(snn).model, load_checkpoint(cnn).model, images,
                           profiles="loihi,45nm-int8", data=data)  # fmt: skip
    assert to_json(report) == out.read_text()
    # the NIR path: a graph run on a target, the same function
    export_nir(load_checkpoint(snn).model, tmp_path / "snn.nir")
    assert energy("--nir", str(tmp_path / "snn.nir"), "--target", "torch", "--random", "3",
                  "--seed", "5", "--profiles", "loihi", "--format", "json", "--output", str(out)) == 0  # fmt: skip
    report = energy_report(tmp_path / "snn.nir", None, images, target="torch", profiles="loihi",
                           data=data)  # fmt: skip
    assert to_json(report) == out.read_text()
    assert json.loads(out.read_text())["snn"]["model"] == "snn.nir"
