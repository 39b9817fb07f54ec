"""``neurall export`` on real checkpoint files (and a tiny generated image folder)."""

from __future__ import annotations

import argparse
import importlib.util
from pathlib import Path

import numpy as np
import pytest
import torch

from conversion.nir_io import graph_metadata, read_nir
from conversion.nir_runtime import load_nir
from neurall_neuro.cli import export_cmd
from neurall_neuro.cli.main import COMMAND_MODULES
from neurall_neuro.errors import ConversionError
from neurall_neuro.models.checkpoint import save_checkpoint

_spec = importlib.util.spec_from_file_location(
    "nir_export_tests", Path(__file__).with_name("test_nir_export.py")
)
_helpers = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(_helpers)
make_model = _helpers.make_model

CLASSES = ["Benign", "Early", "Pre", "Pro"]


def main(argv: list[str]) -> int:
    """``neurall <argv>`` with only the export subcommand registered (the CLI's other
    subcommands belong to other packages)."""
    assert argv[0] == "export" and "export" in COMMAND_MODULES
    parser = argparse.ArgumentParser(prog="neurall")
    export_cmd.register(parser.add_subparsers(dest="command"))
    args = parser.parse_args(argv)
    return args.func(args)


def checkpoint(tmp_path: Path, se_mode: str) -> tuple[torch.nn.Module, Path]:
    model = make_model(se_mode)
    path = save_checkpoint(tmp_path / f"{se_mode}.pt", model, CLASSES, {"size": 16, "clahe": False})
    return model, path


def test_export_nir_prints_summary_and_writes_a_runnable_file(tmp_path, capsys):
    model, ckpt = checkpoint(tmp_path, "spiking")
    out = tmp_path / "model.nir"
    assert main(["export", "--checkpoint", str(ckpt), "--format", "nir", "--out", str(out)]) == 0
    printed = capsys.readouterr().out
    assert (
        "dt = 0.0001 s" in printed
        and "T = 4" in printed
        and "10 LIF" in printed
        and "KiB" in printed
    )
    graph = read_nir(out)
    assert graph_metadata(graph)["class_names"] == CLASSES
    x = torch.rand(4, 3, 16, 16)
    torch.testing.assert_close(
        load_nir(out).run(x).output, model.run(x).step_logits, rtol=1e-6, atol=1e-6
    )


def test_export_analog_needs_calibration_data(tmp_path):
    _, ckpt = checkpoint(tmp_path, "analog")
    with pytest.raises(ConversionError, match="--calibration-data"):
        main(["export", "--checkpoint", str(ckpt), "--out", str(tmp_path / "a.nir")])
    assert not (tmp_path / "a.nir").exists()


def test_export_analog_with_calibration_folder_reports_folding_cost(tmp_path, capsys):
    from PIL import Image

    _, ckpt = checkpoint(tmp_path, "analog")
    data = tmp_path / "data"
    rng = np.random.default_rng(0)
    for name in CLASSES:
        (data / name).mkdir(parents=True)
        for i in range(3):
            pixels = rng.integers(0, 256, size=(20, 20, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(data / name / f"{name}-{i}.png")
    out = tmp_path / "a.nir"
    args = [
        "export",
        "--checkpoint",
        str(ckpt),
        "--out",
        str(out),
        "--calibration-data",
        str(data),
        "--n",
        "8",
    ]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "SE folding on 8 images" in printed and "agreement" in printed
    meta = graph_metadata(read_nir(out))
    assert meta["se_calibration_images"] == 8 and set(meta["se_gates"]) == {"body.se3", "body.se4"}
