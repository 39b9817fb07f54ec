"""SE gate statistics (``neurall_neuro.evaluation.gates``) against a brute-force count."""

from __future__ import annotations

import json

import numpy as np
import pytest
import torch
from torch.utils.data import TensorDataset

from neurall_neuro.errors import ConfigError, DataError
from neurall_neuro.evaluation.gates import GateStatistics, gate_statistics
from neurall_neuro.models.registry import get_model
from neurall_neuro.models.se_block import SEBlock

TINY_SNN = dict(input_size=16, channels=[4, 8, 8, 8], timesteps=3)
N_IMAGES = 10
BATCH = 4  # 10 images: batches of 4, 4 and 2


def _mixed_gates(model: torch.nn.Module, spiking_net: bool) -> None:
    """Make an untrained tiny SNN spike, and give the SE gates input-dependent decisions:
    some channels open, some closed, some changing with the image and the step."""
    generator = torch.Generator().manual_seed(3)
    with torch.no_grad():
        for module in model.modules():
            if spiking_net and isinstance(module, torch.nn.Conv2d) and module.kernel_size == (3, 3):
                module.weight.mul_(6.0)
            if spiking_net and isinstance(module, torch.nn.BatchNorm2d):
                module.bias.fill_(0.6)
            if isinstance(module, SEBlock) and module.mode != "none":
                module.fc1.weight.mul_(8.0)
                module.fc1.bias.zero_()
                module.fc2.weight.mul_(8.0)
                module.fc2.bias.copy_(torch.randn(module.channels, generator=generator))
                if module.mode == "spiking":
                    module.fc2.bias.add_(1.0)  # centred on the spiking gate's threshold v_th = 1


def _model(kind: str) -> torch.nn.Module:
    torch.manual_seed(0)
    if kind == "se-cnn":
        model = get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8])
    else:
        model = get_model("neurallnet", se_mode=kind, **TINY_SNN)
    _mixed_gates(model, spiking_net=kind != "se-cnn")
    return model.eval()


def _images(n: int = N_IMAGES) -> torch.Tensor:
    """Random images with brightness offsets from -2 to 2, so the gates differ by image."""
    noise = torch.rand(n, 3, 16, 16, generator=torch.Generator().manual_seed(1))
    return noise + torch.linspace(-2.0, 2.0, n).view(n, 1, 1, 1)


def _brute_force(model: torch.nn.Module, images: torch.Tensor, batch: int) -> dict[str, dict]:
    """Per SE layer: the gate of every image, step and channel read from the gate
    *activation's* output (not the ChannelGate the module under test hooks), then the
    statistics counted with plain loops."""
    blocks = [(n, m) for n, m in model.named_modules() if isinstance(m, SEBlock)]
    blocks = [(n, m) for n, m in blocks if m.mode != "none"]
    seen: dict[str, list[torch.Tensor]] = {}

    def hook(name: str, mode: str, batch_size: int):
        def fn(_module, _args, out):
            if mode == "spiking":  # LIFLayer output [T, B, C, 1, 1]
                gate = out[..., 0, 0]
            else:  # Sigmoid on [T * B, C, 1, 1]
                gate = out[..., 0, 0].reshape(-1, batch_size, out.shape[1])
            seen.setdefault(name, []).append(gate)

        return fn

    per_layer_batches: dict[str, list[torch.Tensor]] = {n: [] for n, _ in blocks}
    with torch.no_grad():
        for start in range(0, len(images), batch):
            x = images[start : start + batch]
            seen.clear()
            handles = [b.act2.register_forward_hook(hook(n, b.mode, len(x))) for n, b in blocks]
            model(x)
            for h in handles:
                h.remove()
            for name, _ in blocks:
                per_layer_batches[name].append(torch.cat(seen[name]))  # [T, B, C]

    out = {}
    for name, block in blocks:
        gate = torch.cat(per_layer_batches[name], dim=1).numpy()  # [T, N, C]
        steps, n, channels = gate.shape
        is_open = gate > 0 if block.mode == "spiking" else gate >= 0.5
        rate = np.zeros((n, channels))
        for i in range(n):
            for c in range(channels):
                rate[i, c] = sum(bool(is_open[t, i, c]) for t in range(steps)) / steps
        total_open = sum(
            bool(is_open[t, i, c]) for t in range(steps) for i in range(n) for c in range(channels)
        )
        per_step = [
            sum(bool(is_open[t, i, c]) for i in range(n) for c in range(channels)) / (n * channels)
            for t in range(steps)
        ]
        out[name] = {
            "open_rate": total_open / (steps * n * channels),
            "per_step": per_step,
            "mean_gate": float(gate.mean()),
            "rate": rate,
            "steps": steps,
        }
    return out


@pytest.mark.parametrize("kind", ["spiking", "analog", "se-cnn"])
def test_open_rates_match_a_brute_force_count(kind: str) -> None:
    model = _model(kind)
    images = _images()
    stats = gate_statistics(model, images, batch_size=BATCH, progress=False)
    expected = _brute_force(model, images, BATCH)
    assert [layer.name for layer in stats.layers] == list(expected)
    assert len(stats.layers) == (4 if kind == "se-cnn" else 2)
    rates = []
    for layer in stats.layers:
        ref = expected[layer.name]
        rate = ref["rate"]
        assert layer.n_images == N_IMAGES and layer.timesteps == ref["steps"]
        assert layer.open_rate == pytest.approx(ref["open_rate"], abs=1e-12)
        assert layer.mean_gate == pytest.approx(ref["mean_gate"], rel=1e-6)
        assert layer.step_open_rate == pytest.approx(ref["per_step"], abs=1e-12)
        assert layer.channel_open_rate == pytest.approx(list(rate.mean(axis=0)), abs=1e-12)
        for c in range(layer.channels):
            column = list(rate[:, c])
            mean = sum(column) / len(column)
            sd = (sum((v - mean) ** 2 for v in column) / (len(column) - 1)) ** 0.5
            assert layer.channel_image_sd[c] == pytest.approx(sd, abs=1e-12)
            assert layer.channel_image_min[c] == min(column)
            assert layer.channel_image_max[c] == max(column)
        per_image = [sum(row) / len(row) for row in rate]
        assert layer.image_open_rate.mean == pytest.approx(np.mean(per_image), abs=1e-12)
        assert layer.image_open_rate.sd == pytest.approx(np.std(per_image, ddof=1), abs=1e-12)
        assert layer.image_open_rate.min == pytest.approx(min(per_image), abs=1e-12)
        assert layer.image_open_rate.max == pytest.approx(max(per_image), abs=1e-12)
        assert layer.always_open == (ref["open_rate"] >= 0.98)
        if layer.mode == "spiking":
            assert layer.mean_gate == pytest.approx(layer.open_rate, abs=1e-12)
        rates.append(layer.open_rate)
    # the fixture is not degenerate: gate decisions go both ways and differ by image
    assert all(0.0 < r < 1.0 for r in rates), rates
    assert any(layer.image_open_rate.sd > 0 for layer in stats.layers)
    assert any(max(layer.channel_image_sd) > 0 for layer in stats.layers)
    assert any(0.0 < x < 1.0 for layer in stats.layers for x in layer.channel_open_rate)


def test_forced_open_and_closed_gates() -> None:
    model = _model("spiking")
    with torch.no_grad():
        model.body.se3.fc2.bias.fill_(100.0)  # excitation far above threshold: always fires
        model.body.se4.fc2.bias.fill_(-100.0)  # never fires
    stats = gate_statistics(model, _images(), batch_size=BATCH, progress=False)
    opened, closed = stats.layer("body.se3"), stats.layer("body.se4")
    assert opened.open_rate == 1.0 and opened.always_open
    assert opened.always_open_channels == list(range(opened.channels))
    assert opened.image_open_rate.sd == 0.0 and opened.image_open_rate.min == 1.0
    assert closed.open_rate == 0.0 and not closed.always_open
    assert closed.never_open_channels == list(range(closed.channels))
    assert stats.always_open_layers == ["body.se3"]
    table = stats.to_markdown()
    row_open = next(line for line in table.splitlines() if line.startswith("| body.se3"))
    row_closed = next(line for line in table.splitlines() if line.startswith("| body.se4"))
    assert row_open.endswith("| **yes** |") and row_closed.endswith("| no |")
    assert "ALWAYS OPEN" in stats.summary()

    # an analog gate forced open passes (nearly) everything
    analog = _model("analog")
    with torch.no_grad():
        analog.body.se4.fc2.bias.fill_(100.0)
    layer = gate_statistics(analog, _images(), progress=False).layer("body.se4")
    assert layer.always_open and layer.mean_gate == pytest.approx(1.0)


def test_threshold_is_configurable() -> None:
    model = _model("spiking")
    stats = gate_statistics(model, _images(), batch_size=BATCH, progress=False, always_open=0.01)
    flagged = [layer.name for layer in stats.layers if layer.open_rate >= 0.01]
    assert stats.always_open_layers == flagged
    # the threshold itself counts as open: a layer open on 100 % is flagged at 1.0
    with torch.no_grad():
        model.body.se4.fc2.bias.fill_(100.0)
    stats = gate_statistics(model, _images(), batch_size=BATCH, progress=False, always_open=1.0)
    assert stats.always_open_layers == ["body.se4"]
    assert stats.layer("body.se4").always_open_channels == list(range(8))


@pytest.mark.parametrize("spec", [("neurallnet-nose", TINY_SNN), ("se-cnn-nose", {})])
def test_model_without_se_gates_gives_an_empty_result(spec) -> None:
    name, cfg = spec
    model = get_model(name, **{"input_size": 16, "channels": [4, 8, 8, 8], **cfg})
    stats = gate_statistics(model, _images(3), progress=False)
    assert stats.layers == [] and stats.always_open_layers == []
    assert stats.n_images == 3
    assert stats.to_dict()["layers"] == []
    assert "no SE gates" in stats.to_markdown()
    assert stats == GateStatistics([], 3)


def test_dataset_input_json_and_model_state() -> None:
    model = _model("spiking").train()
    images = _images()
    from_tensor = gate_statistics(model, images, batch_size=BATCH, progress=False)
    assert model.training  # restored
    dataset = TensorDataset(images, torch.zeros(len(images), dtype=torch.long))
    from_dataset = gate_statistics(model, dataset, batch_size=BATCH, progress=False)
    assert from_dataset.to_dict() == from_tensor.to_dict()
    data = json.loads(json.dumps(from_tensor.to_dict()))
    layer = data["layers"][0]
    assert layer["neuron_steps"] == N_IMAGES * 3 * 8
    assert len(layer["per_channel"]["open_rate"]) == 8
    assert set(layer["image_open_rate"]) == {"mean", "sd", "min", "max"}


def test_bad_arguments() -> None:
    model = _model("spiking")
    with pytest.raises(ConfigError, match="batch_size"):
        gate_statistics(model, _images(), batch_size=0, progress=False)
    with pytest.raises(ConfigError, match="always_open"):
        gate_statistics(model, _images(), always_open=1.5, progress=False)
    with pytest.raises(ConfigError, match=r"\[N, C, H, W\]"):
        gate_statistics(model, torch.rand(3, 16, 16), progress=False)
    with pytest.raises(DataError, match="no images"):
        gate_statistics(model, torch.rand(0, 3, 16, 16), progress=False)
    stats = gate_statistics(model, _images(2), progress=False)
    with pytest.raises(ConfigError, match="body.se3"):
        stats.layer("body.se9")
