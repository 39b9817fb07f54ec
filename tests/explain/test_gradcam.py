"""Grad-CAM on toy networks whose answer is known, and on the registered models."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.explain import grad_cam
from neurall_neuro.explain.gradcam import default_layer
from neurall_neuro.models.registry import get_model


class QuadrantNet(nn.Module):
    """A CNN that only sees the top-left quadrant of its input (the rest is masked out)."""

    def __init__(self) -> None:
        super().__init__()
        self.conv = nn.Conv2d(3, 4, 3, padding=1, bias=False)
        self.relu = nn.ReLU()
        self.fc = nn.Linear(4, 2)
        with torch.no_grad():
            self.conv.weight.uniform_(0.1, 1.0)
            self.fc.weight.copy_(torch.tensor([[1.0, 0.5, 1.0, 0.5], [-1.0, -1.0, -1.0, -1.0]]))
            self.fc.bias.zero_()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        h, w = x.shape[-2:]
        mask = torch.zeros_like(x)
        mask[..., : h // 2, : w // 2] = 1.0
        return self.fc(self.relu(self.conv(x * mask)).mean(dim=(2, 3)))


def quadrant_mass(maps: torch.Tensor) -> torch.Tensor:
    h, w = maps.shape[-2:]
    return maps[..., : h // 2, : w // 2].sum(dim=(-2, -1)) / maps.sum(dim=(-2, -1))


def test_cnn_gradcam_highlights_the_only_quadrant_the_model_sees() -> None:
    torch.manual_seed(0)
    model = QuadrantNet()
    images = torch.rand(3, 3, 32, 32)
    exp = grad_cam(model, images, target=0, layer="relu")
    assert exp.maps.shape == (3, 32, 32) and exp.step_maps is None
    assert float(exp.maps.min()) >= 0.0 and float(exp.maps.amax(dim=(1, 2)).min()) == pytest.approx(
        1.0
    )
    assert bool((quadrant_mass(exp.maps) > 0.9).all())
    # Beyond the 3x3 convolution's 1-pixel reach outside the quadrant the map is exactly 0.
    assert float(exp.maps[:, 17:, :].abs().sum() + exp.maps[:, :, 17:].abs().sum()) == 0.0
    # Class 1 has negative weights on every channel: nothing supports it anywhere.
    assert float(grad_cam(model, images, target=1, layer="relu").maps.sum()) == 0.0


def _positive_snn() -> nn.Module:
    """A tiny SE-free SNN with positive weights: spikes (and class-0 evidence) follow the input."""
    torch.manual_seed(0)
    model = get_model(
        "neurallnet", input_size=64, channels=[4, 4, 4, 4], timesteps=4, se_mode="none"
    )
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d):
                module.weight.abs_()
        model.body.head_fc.weight[0].abs_()
    return model.eval()


def test_snn_gradcam_follows_the_active_quadrant_over_time() -> None:
    model = _positive_snn()
    images = torch.zeros(2, 3, 64, 64)
    images[:, :, :32, :32] = 1.0  # only the top-left quadrant drives the network
    exp = grad_cam(model, images, target=0)
    assert exp.layer == "lif4"
    assert exp.maps.shape == (2, 64, 64)
    assert exp.step_maps is not None and exp.step_maps.shape == (4, 2, 64, 64)
    assert exp.raw.shape == (2, 8, 8)
    assert bool((quadrant_mass(exp.maps) > 0.9).all())
    assert float(exp.step_maps.min()) >= 0.0 and float(exp.step_maps.max()) <= 1.0
    assert not model.training


def test_gradcam_on_registered_models_and_layer_errors() -> None:
    cnn = get_model("se-cnn", input_size=16, channels=[4, 8, 8, 8]).eval()
    assert default_layer(cnn) == "features.stage4.relu2"
    exp = grad_cam(cnn, torch.rand(2, 3, 16, 16))
    assert exp.maps.shape == (2, 16, 16) and exp.layer == "features.stage4.relu2"
    assert torch.equal(exp.target, exp.predicted)
    layer_exp = grad_cam(cnn, torch.rand(2, 3, 16, 16), layer="features.stage2.relu2", target=1)
    assert layer_exp.raw.shape == (2, 8, 8) and layer_exp.target.tolist() == [1, 1]
    with pytest.raises(ConfigError, match="valid layers"):
        grad_cam(cnn, torch.rand(1, 3, 16, 16), layer="nope")
    snn = get_model("neurallnet", input_size=16, channels=[4, 8, 8, 8], timesteps=2)
    with pytest.raises(ConfigError, match="valid layers: .*lif1"):
        grad_cam(snn, torch.rand(1, 3, 16, 16), layer="conv2")
    with pytest.raises(ConfigError, match="target class"):
        grad_cam(snn, torch.rand(1, 3, 16, 16), target=7)
