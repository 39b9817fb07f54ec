"""``neurall deploy`` through the CLI entry point: real targets, parity.json and parity.png."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import pytest
import torch

from neurall_neuro.cli.main import main
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.synth import generate_cohort
from neurall_neuro.models.checkpoint import save_checkpoint
from neurall_neuro.models.registry import get_model

HAVE_LAVA = importlib.util.find_spec("lava") is not None


@pytest.fixture(scope="module")
def snn_and_cohort(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    root = tmp_path_factory.mktemp("deploy")
    cohort = root / "cohort"
    generate_cohort(cohort, n_per_class=3, size=16, seed=0, n_patients_per_class=3)
    torch.manual_seed(0)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=3)
    model.train()
    with torch.no_grad():  # a few BN batches so that the layers actually spike
        for _ in range(3):
            model(torch.rand(8, 3, 16, 16))
    model.eval()
    ckpt = save_checkpoint(
        root / "snn.pt", model, ["Benign", "Early", "Pre", "Pro"], Preprocessing(size=16).to_dict()
    )
    return ckpt, cohort


def test_cli_deploy_writes_a_parity_report(
    snn_and_cohort: tuple[Path, Path], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, cohort = snn_and_cohort
    targets = "torch,loihi-emu" + (",lava-sim" if HAVE_LAVA else "")
    out = tmp_path / "parity"
    argv = ["deploy", "--checkpoint", str(ckpt), "--data", str(cohort), "--targets", targets]
    assert main([*argv, "--n", "6", "--lava-n", "1", "--out", str(out)]) == 0
    report = json.loads((out / "parity.json").read_text())
    by_name = {t["target"]: t for t in report["targets"]}
    assert set(by_name) == set(targets.split(","))
    assert all(t["status"] == "ok" for t in by_name.values()), by_name
    # the float NIR runtime computes exactly what the Norse model computes
    assert by_name["torch"]["agreement_with_norse"] == 1.0
    assert by_name["torch"]["n"] == 6
    if HAVE_LAVA:
        assert by_name["lava-sim"]["n"] == 1
    assert (out / "parity.png").stat().st_size > 0
    printed = capsys.readouterr().out
    assert "loihi-emu" in printed and "parity.json" in printed


def test_cli_deploy_rejects_unknown_targets(
    snn_and_cohort: tuple[Path, Path], capsys: pytest.CaptureFixture[str]
) -> None:
    ckpt, cohort = snn_and_cohort
    argv = ["deploy", "--checkpoint", str(ckpt), "--data", str(cohort), "--targets", "torch,tpu"]
    assert main(argv) != 0
    err = capsys.readouterr().err
    assert "tpu" in err and "loihi-emu" in err  # names the problem and the valid options
