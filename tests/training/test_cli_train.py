"""``neurall train`` through the CLI entry point: flags, recipe files, resume, errors."""

from __future__ import annotations

import csv
from pathlib import Path

import pytest
import yaml

from neurall_neuro.cli.main import main

TINY = ["--size", "16", "--set", "channels=[4, 8, 8, 8]", "--batch-size", "8", "--device", "cpu"]
FAST = ["--threads", "1", "--bootstrap", "20", "--quiet"]


def _rows(run: Path) -> list[dict[str, str]]:
    with (run / "metrics.csv").open() as fh:
        return list(csv.DictReader(fh))


def test_cli_train_recipe_flags_and_resume(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    recipe = tmp_path / "recipe.yaml"
    recipe.write_text(
        "model: se-cnn\nepochs: 3\nlr: 0.002\nscheduler: cosine\nset:\n  dropout: 0.2\n"
    )
    run = tmp_path / "run"
    argv = ["train", "--config", str(recipe), "--data", str(tiny_cohort_dir), "--out", str(run)]
    assert main([*argv, *TINY, *FAST, "--epochs", "1"]) == 0  # the flag overrides the recipe
    assert len(_rows(run)) == 1
    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["epochs"] == 1 and saved["lr"] == 0.002 and saved["scheduler"] == "cosine"
    assert saved["model_options"] == {"channels": [4, 8, 8, 8], "dropout": 0.2}
    assert saved["resolved"]["model_config"]["dropout"] == 0.2
    assert (run / "test_metrics.json").is_file()

    # Resume from the run's own config.yaml, extending the epoch budget.
    assert main(["train", "--resume", "--out", str(run), "--epochs", "2", *FAST]) == 0
    assert [r["epoch"] for r in _rows(run)] == ["1", "2"]


def test_cli_train_errors_are_one_line(
    tiny_cohort_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(["train", "--model", "se-cnn", "--out", str(tmp_path / "r")]) == 2
    assert "missing required option(s) --data" in capsys.readouterr().err
    argv = [
        "train",
        "--model",
        "resnet",
        "--data",
        str(tiny_cohort_dir),
        "--out",
        str(tmp_path / "r"),
    ]
    assert main(argv) == 2
    err = capsys.readouterr().err
    assert "unknown model 'resnet'" in err and "neurallnet" in err
    argv = [
        "train",
        "--model",
        "se-cnn",
        "--data",
        str(tiny_cohort_dir),
        "--out",
        str(tmp_path / "s"),
    ]
    assert main([*argv, "--set", "channels"]) == 2
    assert "key=value" in capsys.readouterr().err
