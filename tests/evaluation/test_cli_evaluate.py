"""``neurall evaluate`` through the CLI entry point."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from neurall_neuro.cli.main import main
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.models.checkpoint import save_checkpoint
from neurall_neuro.models.registry import get_model


def test_cli_evaluate(
    tiny_cohort_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    torch.manual_seed(0)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=2)
    ckpt = save_checkpoint(
        tmp_path / "m.pt",
        model,
        ["Benign", "Early", "Pre", "Pro"],
        Preprocessing(size=16).to_dict(),
    )
    out = tmp_path / "eval"
    argv = [
        "evaluate",
        "--checkpoint",
        str(ckpt),
        "--data",
        str(tiny_cohort_dir),
        "--out",
        str(out),
    ]
    assert main([*argv, "--robustness", "grayscale", "--bootstrap", "1000", "--device", "cpu"]) == 0
    printed = capsys.readouterr().out
    assert "accuracy" in printed and "95% CI" in printed
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["model"] == "neurallnet" and metrics["n_images"] == 48
    assert metrics["bootstrap"]["n_resamples"] == 1000
    assert "grayscale" in metrics["robustness"]
    assert (out / "predictions.csv").is_file() and (out / "confusion_matrix.png").is_file()

    assert (
        main(
            ["evaluate", "--checkpoint", str(tmp_path / "missing.pt"), "--data", "x", "--out", "y"]
        )
        == 2
    )
    assert "checkpoint not found" in capsys.readouterr().err
    assert main([*argv, "--robustness", "blur"]) == 2
    assert "valid options" in capsys.readouterr().err
