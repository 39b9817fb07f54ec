"""End-to-end training runs on a tiny generated cohort (tiny models, 16 px)."""

from __future__ import annotations

import csv
import json
from pathlib import Path

import pytest
import torch
import yaml

from neurall_neuro.errors import ConfigError
from neurall_neuro.models.checkpoint import load_checkpoint, read_checkpoint_dict
from neurall_neuro.training import TrainConfig, train

TINY_SNN = {"channels": [4, 8, 8, 8]}


def _config(data: Path, out: Path, **overrides: object) -> TrainConfig:
    values: dict[str, object] = dict(
        model="neurallnet", data=data, out=out, size=16, timesteps=2, model_options=dict(TINY_SNN),
        epochs=2, batch_size=8, lr=3e-3, bootstrap=50, log=False, device="cpu", threads=1,
    )  # fmt: skip
    values.update(overrides)
    return TrainConfig(**values)


def test_run_writes_every_artefact(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "run"
    result = train(_config(tiny_cohort_dir, out, model="se-cnn", timesteps=None))
    for name in (
        "config.yaml",
        "split.json",
        "metrics.csv",
        "best.pt",
        "last.pt",
        "curves.png",
        "test_metrics.json",
    ):
        assert (out / name).is_file(), name
    with (out / "metrics.csv").open() as fh:
        rows = list(csv.DictReader(fh))
    assert [int(r["epoch"]) for r in rows] == [1, 2]
    assert set(rows[0]) == {
        "epoch",
        "train_loss",
        "train_acc",
        "val_loss",
        "val_acc",
        "lr",
        "time_s",
    }
    assert float(rows[0]["lr"]) == pytest.approx(3e-3)

    cfg = yaml.safe_load((out / "config.yaml").read_text())
    assert cfg["resolved"]["model_config"]["input_size"] == 16
    assert cfg["resolved"]["class_names"] == ["Benign", "Early", "Pre", "Pro"]
    assert cfg["resolved"]["split_group_by"] == "patient"

    # Checkpoints are self-describing and weights_only-loadable; last.pt can resume.
    best = load_checkpoint(out / "best.pt")
    assert best.model_name == "se-cnn" and best.preprocessing == {"size": 16, "clahe": False}
    assert best.metadata["epoch"] == result.best_epoch
    assert best.metadata["train_root"]
    saved = read_checkpoint_dict(out / "best.pt")["state_dict"]
    for key, value in best.model.state_dict().items():
        assert torch.equal(value, saved[key]), key
    x = torch.rand(2, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(best.model(x), load_checkpoint(out / "best.pt").model(x))
    last = read_checkpoint_dict(out / "last.pt")
    assert set(last["training_state"]) >= {
        "optimizer",
        "scheduler",
        "early_stopping",
        "rng",
        "epoch",
    }

    metrics = json.loads((out / "test_metrics.json").read_text())
    assert 0.0 <= metrics["accuracy"] <= 1.0
    assert metrics["n_images"] == len(json.loads((out / "split.json").read_text())["test"])
    assert result.test_metrics is not None and result.test_accuracy == metrics["accuracy"]
    assert result.parameters > 0 and result.train_images_per_s > 0

    # A second run into the same folder must not overwrite it silently.
    with pytest.raises(ConfigError, match="--resume"):
        train(_config(tiny_cohort_dir, out, model="se-cnn", timesteps=None))


def test_resume_continues_exactly(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    straight = train(_config(tiny_cohort_dir, tmp_path / "a", epochs=4, evaluate_test=False))
    train(_config(tiny_cohort_dir, tmp_path / "b", epochs=2, evaluate_test=False))
    resumed = train(
        _config(tiny_cohort_dir, tmp_path / "b", epochs=4, evaluate_test=False, resume=True)
    )
    assert resumed.epochs_run == straight.epochs_run == 4
    for name in ("last.pt", "best.pt"):
        a = read_checkpoint_dict(tmp_path / "a" / name)["state_dict"]
        b = read_checkpoint_dict(tmp_path / "b" / name)["state_dict"]
        assert a.keys() == b.keys()
        for key in a:
            assert torch.equal(a[key], b[key]), f"{name}: {key} differs"
    rows = [list(csv.DictReader((tmp_path / r / "metrics.csv").open())) for r in ("a", "b")]
    strip = [[{k: v for k, v in row.items() if k != "time_s"} for row in rs] for rs in rows]
    assert strip[0] == strip[1]


def test_bad_options_fail_before_training(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="spiking models only"):
        train(_config(tiny_cohort_dir, tmp_path / "x", model="se-cnn", timesteps=4))
    with pytest.raises(ConfigError, match="conflicts"):
        train(_config(tiny_cohort_dir, tmp_path / "y", model_options={"input_size": 32}))
    with pytest.raises(ConfigError, match="cannot resume"):
        train(_config(tiny_cohort_dir, tmp_path / "z", resume=True))
    with pytest.raises(ConfigError, match="needs a CUDA device"):
        train(_config(tiny_cohort_dir, tmp_path / "w", amp=True))
    assert not any(tmp_path.iterdir())  # nothing written for invalid options


def test_group_duplicates_split(tiny_cohort_dir: Path, tmp_path: Path) -> None:
    out = tmp_path / "dups"
    train(_config(tiny_cohort_dir, out, epochs=1, group_duplicates=True, evaluate_test=False))
    split = json.loads((out / "split.json").read_text())
    assert split["group_by"] == "duplicates+patient"
    assert len(split["train"]) + len(split["val"]) + len(split["test"]) == 48
