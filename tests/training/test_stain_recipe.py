"""Stain options of a training recipe: ``--stain-augment hed``, ``--stain-norm macenko``."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import yaml

from neurall_neuro.cli.main import main
from neurall_neuro.data.layouts import load_cohort
from neurall_neuro.data.preprocess import Preprocessing
from neurall_neuro.data.splits import Split
from neurall_neuro.data.stain import fit_stain_reference
from neurall_neuro.errors import ConfigError
from neurall_neuro.models.checkpoint import load_checkpoint
from neurall_neuro.training.config import TrainConfig

TINY = ["--size", "16", "--set", "channels=[4, 8, 8, 8]", "--batch-size", "8", "--device", "cpu"]
FAST = ["--threads", "1", "--bootstrap", "20", "--quiet", "--bn-recal-images", "0"]


def test_train_with_stain_options_records_and_reproduces_them(
    tiny_cohort_dir: Path, tmp_path: Path
) -> None:
    run = tmp_path / "run"
    argv = ["train", "--model", "se-cnn", "--data", str(tiny_cohort_dir), "--out", str(run)]
    stain = ["--stain-augment", "hed", "--stain-augment-strength", "0.1"]
    stain += ["--stain-norm", "macenko"]
    assert main([*argv, *TINY, *FAST, *stain, "--epochs", "1"]) == 0

    saved = yaml.safe_load((run / "config.yaml").read_text())
    assert saved["stain_augment"] == "hed" and saved["stain_augment_strength"] == 0.1
    assert saved["stain_norm"] == "macenko"
    assert saved["resolved"]["preprocessing"]["stain_norm"] == "macenko"

    ckpt = load_checkpoint(run / "best.pt")
    assert ckpt.preprocessing["stain_norm"] == "macenko"
    assert ckpt.metadata["train_config"]["stain_augment"] == "hed"
    # The stored reference is the one fitted on the run's training split.
    cohort = load_cohort(tiny_cohort_dir)
    train = Split.load(run / "split.json").apply(cohort)["train"]
    expected = fit_stain_reference([r.path for r in train.records], root=tiny_cohort_dir)
    pre = Preprocessing.from_dict(ckpt.preprocessing)
    assert pre.stain_reference == expected
    assert json.loads((run / "test_metrics.json").read_text())["n_images"] > 0

    # Evaluation reproduces the normalisation from the checkpoint and runs hed-jitter.
    out = tmp_path / "eval"
    evaluate = ["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(tiny_cohort_dir)]
    evaluate += ["--out", str(out), "--robustness", "hed-jitter", "--bootstrap", "10"]
    assert main([*evaluate, "--device", "cpu", "--split-file", str(run / "split.json")]) == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert "hed-jitter" in metrics["robustness"]
    assert metrics["data"]["preprocessing"]["stain_reference"]["he"] == [
        list(row) for row in expected.he
    ]


def test_train_data_is_stain_normalised(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    from neurall_neuro.training.data import prepare_data
    from neurall_neuro.training.distributed import init_distributed

    config = TrainConfig(
        model="se-cnn", data=tiny_cohort_dir, out=tmp_path / "run", stain_norm="macenko",
        stain_augment="hed", log=False,
    )  # fmt: skip
    given = Preprocessing(size=16)
    data = prepare_data(config, given, init_distributed("cpu"), log=lambda _: None)
    assert given.stain_norm == "none"  # not changed: the fitted settings are a copy
    pre = data.preprocessing
    assert pre.stain_norm == "macenko" and pre.stain_reference is not None
    assert data.train_set.stain_augment == "hed" and data.val_set.stain_augment == "none"
    path = data.val_set.records[0].path
    plain = Preprocessing(size=16).load_uint8(path)
    assert np.array_equal(data.val_set.pixels(0), pre.load_uint8(path))
    assert not np.array_equal(data.val_set.pixels(0), plain)


@pytest.mark.parametrize(
    ("values", "message"),
    [
        ({"stain_norm": "reinhard"}, "valid options: none, macenko"),
        ({"stain_augment": "rgb"}, "valid options: none, hed"),
        ({"stain_augment": "hed", "stain_augment_strength": 2.0}, r"in \[0, 1\]"),
        ({"stain_augment": "hed", "stain_augment_strength": "x"}, "stain_augment_strength"),
        ({"stain_augment_strength": 0.1}, "--stain-augment hed"),
    ],
)
def test_bad_stain_options_are_config_errors(values: dict, message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        TrainConfig(model="se-cnn", data="d", out="o", **values)
    with pytest.raises(ConfigError, match=message):
        TrainConfig.from_dict({"model": "se-cnn", "data": "d", "out": "o", **values})


def test_cli_rejects_unknown_stain_values(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    argv = ["train", "--model", "se-cnn", "--data", "d", "--out", str(tmp_path / "r")]
    with pytest.raises(SystemExit):
        main([*argv, "--stain-norm", "reinhard"])
    assert "macenko" in capsys.readouterr().err
