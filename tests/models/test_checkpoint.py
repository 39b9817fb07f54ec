"""Self-describing checkpoints: round trip, weights_only loading, clear errors."""

from __future__ import annotations

import pytest
import torch

from neurall_neuro.errors import CheckpointError
from neurall_neuro.models.checkpoint import (
    load_checkpoint,
    read_checkpoint_dict,
    save_checkpoint,
    write_checkpoint_dict,
)
from neurall_neuro.models.registry import get_model


@pytest.mark.parametrize("name", ["neurallnet", "se-cnn-nose"])
def test_round_trip_rebuilds_the_same_model(tmp_path, name):
    torch.manual_seed(0)
    cfg = dict(input_size=16, channels=[4, 8, 8, 8])
    if name == "neurallnet":
        cfg.update(timesteps=2, se_mode="analog")
    model = get_model(name, **cfg).eval()
    path = save_checkpoint(
        tmp_path / "m.pt", model, ["A", "B", "C", "D"], {"size": 16}, {"epoch": 7}
    )
    # Plain torch loading with weights_only=True works (no pickled classes).
    raw = torch.load(path, weights_only=True)
    assert raw["model"] == name and raw["config"]["input_size"] == 16
    ckpt = load_checkpoint(path)
    assert ckpt.model_name == name
    assert ckpt.class_names == ["A", "B", "C", "D"]
    assert ckpt.metadata == {"epoch": 7}
    x = torch.rand(3, 3, 16, 16)
    with torch.no_grad():
        assert torch.equal(ckpt.model(x), model(x))
    assert not list(tmp_path.glob("*.tmp")), "atomic write leaves no temp files"


def test_bad_checkpoints_raise_clear_errors(tmp_path):
    with pytest.raises(CheckpointError, match="not found"):
        load_checkpoint(tmp_path / "missing.pt")
    garbage = tmp_path / "garbage.pt"
    garbage.write_bytes(b"not a checkpoint at all")
    with pytest.raises(CheckpointError, match="cannot read checkpoint"):
        load_checkpoint(garbage)
    plain = tmp_path / "plain.pt"
    torch.save(get_model("se-cnn", input_size=16).state_dict(), plain)
    with pytest.raises(CheckpointError, match="not a neurall-neuro checkpoint"):
        load_checkpoint(plain)
    model = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8])
    path = save_checkpoint(tmp_path / "ok.pt", model, ["a", "b", "c", "d"], {"size": 16})
    payload = read_checkpoint_dict(path)
    payload["config"]["channels"] = [8, 8, 8, 8]
    torch.save(payload, tmp_path / "mismatch.pt")
    with pytest.raises(CheckpointError, match="weights do not match"):
        load_checkpoint(tmp_path / "mismatch.pt")
    payload["model"] = "unknown-net"
    torch.save(payload, tmp_path / "unknown.pt")
    with pytest.raises(CheckpointError, match="valid options"):
        load_checkpoint(tmp_path / "unknown.pt")
    del payload["state_dict"]
    torch.save(payload, tmp_path / "partial.pt")
    with pytest.raises(CheckpointError, match="lacks required field"):
        load_checkpoint(tmp_path / "partial.pt")


def test_image_hashes_entry_round_trips_and_weights_stay_put(tmp_path):
    """The optional ``image_hashes`` entry survives weights_only loading; adding it to an
    existing checkpoint leaves the state dict bit-identical."""
    from neurall_neuro.evaluation.training_images import (
        RememberedPart,
        TrainingImageHashes,
        add_image_hashes,
    )

    model = get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8])
    path = save_checkpoint(tmp_path / "m.pt", model, ["a", "b", "c", "d"], {"size": 16})
    assert load_checkpoint(path).image_hashes is None
    before = read_checkpoint_dict(path)["state_dict"]
    part = RememberedPart(
        3, torch.tensor([1, -2, 3]).numpy(), torch.arange(32, dtype=torch.uint8).view(2, 16).numpy()
    )
    add_image_hashes(path, TrainingImageHashes({"train": part}), {"split_file": "s.json"})
    raw = torch.load(path, weights_only=True)
    assert raw["image_hashes"]["parts"]["train"]["n_images"] == 3
    assert raw["metadata"] == {"split_file": "s.json"}
    assert all(torch.equal(raw["state_dict"][k], v) for k, v in before.items())
    assert load_checkpoint(path).image_hashes["format"] == "neurall-image-hashes"
    with pytest.raises(CheckpointError, match="refusing to write"):
        write_checkpoint_dict(tmp_path / "x.pt", {"state_dict": {}})
