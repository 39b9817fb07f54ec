"""``neurall explain`` through the CLI entry point."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from neurall_neuro.cli.main import main
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.models.checkpoint import save_checkpoint
from neurall_neuro.models.registry import get_model

CLASSES = ["Benign", "Early", "Pre", "Pro"]


def _checkpoint(tmp_path: Path, name: str, **config: object) -> Path:
    torch.manual_seed(0)
    model = get_model(name, input_size=16, channels=[4, 8, 8, 8], **config)
    return save_checkpoint(
        tmp_path / f"{name}.pt", model, CLASSES, Preprocessing(size=16).to_dict()
    )


def test_cli_explain_snn_all_methods_per_timestep(
    tiny_cohort_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _checkpoint(tmp_path, "neurallnet", timesteps=2)
    out = tmp_path / "maps"
    argv = ["explain", "--checkpoint", str(ckpt), "--data", str(tiny_cohort_dir), "--n", "2"]
    assert main([*argv, "--out", str(out), "--method", "all", "--per-timestep"]) == 0
    pngs = sorted(p.name for p in out.glob("*.png"))
    # 2 images x (gradcam + 2 steps + sam + 2 steps)
    assert len(pngs) == 12
    assert sum(n.endswith("_gradcam.png") for n in pngs) == 2
    assert sum(n.endswith("_sam_t1.png") for n in pngs) == 2
    assert "gradcam on lif4" in capsys.readouterr().out


def test_cli_explain_cnn_images_and_errors(
    tiny_cohort_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt = _checkpoint(tmp_path, "se-cnn")
    image = sorted((tiny_cohort_dir / "Pre").glob("*.png"))[0]
    out = tmp_path / "cnn"
    assert (
        main(["explain", "--checkpoint", str(ckpt), "--images", str(image), "--out", str(out)]) == 0
    )
    assert [p.name for p in out.glob("*.png")] == [f"000_{image.stem}_gradcam.png"]
    assert "/1 correct" in capsys.readouterr().out  # true label read from the folder name
    argv = ["explain", "--checkpoint", str(ckpt), "--images", str(image), "--out", str(out)]
    assert main([*argv, "--method", "sam"]) == 2
    assert "spiking model" in capsys.readouterr().err
    assert main([*argv, "--layer", "nope"]) == 2
    assert "valid layers" in capsys.readouterr().err
