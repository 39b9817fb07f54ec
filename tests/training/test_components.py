"""Training building blocks: config parsing, class weights, early stopping, RNG state."""

from __future__ import annotations

import io
import random
from pathlib import Path

import numpy as np
import pytest
import torch
from sklearn.utils.class_weight import compute_class_weight
from torch import nn

from neurall_neuro.errors import ConfigError, DataError
from neurall_neuro.training.class_weights import class_weights
from neurall_neuro.training.config import TrainConfig, load_recipe, parse_set_items
from neurall_neuro.training.early_stopping import EarlyStopping
from neurall_neuro.training.seeding import rng_state, set_rng_state


def test_parse_set_items_uses_yaml_scalars() -> None:
    out = parse_set_items(["timesteps=8", "se_mode=none", "channels=[8, 16]", "v_th=0.5", "x=true"])
    assert out == {"timesteps": 8, "se_mode": "none", "channels": [8, 16], "v_th": 0.5, "x": True}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_items(["timesteps"])


def test_recipe_file_keys_and_validation(tmp_path: Path) -> None:
    recipe = tmp_path / "r.yaml"
    recipe.write_text("model: se-cnn\nbatch-size: 8\nset:\n  - dropout=0.1\nresolved: {x: 1}\n")
    values = load_recipe(recipe)
    assert values == {"model": "se-cnn", "batch_size": 8, "model_options": {"dropout": 0.1}}
    cfg = TrainConfig.from_dict({**values, "data": "d", "out": "o"})
    assert cfg.batch_size == 8 and cfg.lr == 1e-4 and cfg.epochs == 50 and cfg.patience == 5
    bad = tmp_path / "bad.yaml"
    bad.write_text("modle: se-cnn\n")
    with pytest.raises(ConfigError, match="unknown training option 'modle'"):
        load_recipe(bad)
    with pytest.raises(ConfigError, match="scheduler"):
        TrainConfig(model="m", data="d", out="o", scheduler="step")
    with pytest.raises(ConfigError, match="batch_size"):
        TrainConfig(model="m", data="d", out="o", batch_size=0)


def test_class_weights_match_hand_and_sklearn() -> None:
    labels = [0] * 6 + [1] * 3 + [2] * 1
    w = class_weights(labels, ["a", "b", "c"])
    # N / (K n_c) = 10 / (3 * [6, 3, 1])
    assert torch.allclose(w, torch.tensor([10 / 18, 10 / 9, 10 / 3]))
    ref = compute_class_weight("balanced", classes=np.arange(3), y=np.array(labels))
    assert np.allclose(w.numpy(), ref)
    assert torch.allclose(class_weights([0, 1, 0, 1], ["a", "b"]), torch.ones(2))
    with pytest.raises(DataError, match="'c'"):
        class_weights([0, 1], ["a", "b", "c"])


def _model_with_value(value: float) -> nn.Module:
    model = nn.Linear(1, 1)
    with torch.no_grad():
        model.weight.fill_(value)
        model.bias.fill_(value)
    return model


def test_early_stopping_scripted_sequence_restores_best() -> None:
    losses = [1.0, 0.7, 0.8, 0.75, 0.72, 0.9, 0.5]
    stopper = EarlyStopping(patience=3)
    model = _model_with_value(0.0)
    stopped_at = None
    for epoch, loss in enumerate(losses, start=1):
        with torch.no_grad():
            model.weight.fill_(float(epoch))  # weights identify the epoch
        if stopper.step(loss, epoch, model):
            stopped_at = epoch
            break
    assert stopped_at == 5  # epochs 3, 4, 5 did not improve on 0.7
    assert stopper.best_epoch == 2 and stopper.best == pytest.approx(0.7)
    assert stopper.restore_best(model)
    assert model.weight.item() == 2.0


def test_early_stopping_min_delta_and_state_round_trip() -> None:
    stopper = EarlyStopping(patience=2, min_delta=0.1)
    model = _model_with_value(1.0)
    stopper.step(1.0, 1, model)
    stopper.step(0.95, 2, model)  # not better by more than min_delta
    assert stopper.bad_epochs == 1 and stopper.best_epoch == 1
    buf = io.BytesIO()
    torch.save(stopper.state_dict(), buf)
    buf.seek(0)
    clone = EarlyStopping()
    clone.load_state_dict(torch.load(buf, weights_only=True))
    assert (clone.best, clone.best_epoch, clone.bad_epochs, clone.patience) == (1.0, 1, 1, 2)
    assert torch.equal(clone.best_state["weight"], stopper.best_state["weight"])
    assert EarlyStopping(patience=0).step(2.0, 1, model) is False  # patience 0 never stops


def test_rng_state_round_trip_is_weights_only_loadable() -> None:
    torch.manual_seed(1)
    np.random.seed(2)
    random.seed(3)
    buf = io.BytesIO()
    torch.save(rng_state(), buf)
    expected = (torch.rand(3), np.random.rand(3), random.random())
    buf.seek(0)
    set_rng_state(torch.load(buf, weights_only=True))
    again = (torch.rand(3), np.random.rand(3), random.random())
    assert torch.equal(expected[0], again[0])
    assert np.array_equal(expected[1], again[1])
    assert expected[2] == again[2]


def test_default_threads_backs_off_on_a_busy_machine(monkeypatch: pytest.MonkeyPatch) -> None:
    from neurall_neuro.training import trainer

    monkeypatch.setattr(trainer, "_cpu_count", lambda: 8)
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (0.5, 0.5, 0.5))
    assert trainer.default_threads(1) == 8
    assert trainer.default_threads(2) == 4
    assert trainer.default_threads(16) == 1
    monkeypatch.setattr(trainer.os, "getloadavg", lambda: (9.0, 9.0, 9.0))
    assert trainer.default_threads(1) == 1
