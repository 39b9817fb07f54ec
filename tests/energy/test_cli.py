"""``neurall energy`` end to end on tiny checkpoints (random images and an image folder)."""

from __future__ import annotations

import argparse
import json
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
