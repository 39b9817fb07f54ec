"""Brute-force references and tiny models shared by the energy tests (as fixtures).

The brute-force functions loop over every input and output position (slow, obviously
correct); the library's vectorised code is checked against them.
"""

from __future__ import annotations

from types import SimpleNamespace

import pytest
import torch
from torch import nn

from energy.fanout import ConvGeometry
from neurall_neuro.models.registry import get_model

TINY_SNN = {"input_size": 16, "channels": [4, 8, 8, 8], "timesteps": 4}
TINY_CNN = {"input_size": 16, "channels": [4, 8, 8, 8]}


def brute_conv_fanout(geometry: ConvGeometry, height: int, width: int) -> torch.Tensor:
    """Fan-out ``[C_in, H, W]`` by enumerating every (output, kernel tap) pair."""
    out_h, out_w = geometry.output_size(height, width)
    top, _, left, _ = geometry.padding
    per_group_in = geometry.in_channels // geometry.groups
    per_group_out = geometry.out_channels // geometry.groups
    fanout = torch.zeros(geometry.in_channels, height, width, dtype=torch.int64)
    for co in range(geometry.out_channels):
        group = co // per_group_out
        for ci in range(group * per_group_in, (group + 1) * per_group_in):
            for oh in range(out_h):
                for ow in range(out_w):
                    for a in range(geometry.kernel[0]):
                        for b in range(geometry.kernel[1]):
                            ih = oh * geometry.stride[0] - top + a * geometry.dilation[0]
                            iw = ow * geometry.stride[1] - left + b * geometry.dilation[1]
                            if 0 <= ih < height and 0 <= iw < width:
                                fanout[ci, ih, iw] += 1
    return fanout


def brute_pool_conv_fanout(
    pool: int, geometry: ConvGeometry, height: int, width: int
) -> torch.Tensor:
    """Distinct outputs reachable from each input through AvgPool(pool) then the conv."""
    pooled_h, pooled_w = height // pool, width // pool
    out_h, out_w = geometry.output_size(pooled_h, pooled_w)
    top, _, left, _ = geometry.padding
    reach: dict[tuple[int, int, int], set[tuple[int, int, int]]] = {}
    per_group_in = geometry.in_channels // geometry.groups
    per_group_out = geometry.out_channels // geometry.groups
    for co in range(geometry.out_channels):
        group = co // per_group_out
        for ci in range(group * per_group_in, (group + 1) * per_group_in):
            for oh in range(out_h):
                for ow in range(out_w):
                    for a in range(geometry.kernel[0]):
                        for b in range(geometry.kernel[1]):
                            ph = oh * geometry.stride[0] - top + a * geometry.dilation[0]
                            pw = ow * geometry.stride[1] - left + b * geometry.dilation[1]
                            if 0 <= ph < pooled_h and 0 <= pw < pooled_w:
                                reach.setdefault((ci, ph, pw), set()).add((co, oh, ow))
    fanout = torch.zeros(geometry.in_channels, height, width, dtype=torch.int64)
    for ci in range(geometry.in_channels):
        for h in range(pooled_h * pool):
            for w in range(pooled_w * pool):
                fanout[ci, h, w] = len(reach.get((ci, h // pool, w // pool), ()))
    return fanout


def brute_dense_ops(layer: nn.Module, in_shape: tuple[int, ...]) -> int:
    """Dense synaptic operations per frame: (output, input) pairs that share a synapse."""
    if isinstance(layer, nn.Linear):
        return layer.in_features * layer.out_features * int(torch.tensor(in_shape[:-1]).prod())
    geometry = ConvGeometry.from_module(layer)
    return int(brute_conv_fanout(geometry, in_shape[1], in_shape[2]).sum())


def single(module: nn.Module) -> nn.Sequential:
    """Wrap one layer so the counter names it ``0``."""
    return nn.Sequential(module)


@pytest.fixture(scope="session")
def brute() -> SimpleNamespace:
    """The brute-force references of this module."""
    return SimpleNamespace(
        conv_fanout=brute_conv_fanout,
        pool_conv_fanout=brute_pool_conv_fanout,
        dense_ops=brute_dense_ops,
        single=single,
    )


@pytest.fixture
def tiny_snn() -> nn.Module:
    """A tiny SE-SNN (16 px, T=4, spiking SE) whose convolutions are scaled up so it spikes."""
    torch.manual_seed(0)
    model = get_model("neurallnet", **TINY_SNN)
    with torch.no_grad():
        model.stem.conv.weight.mul_(8)
        for name in ("conv2", "conv3", "conv4"):
            getattr(model.body, name).weight.mul_(6)
    return model.eval()


@pytest.fixture
def tiny_cnn() -> nn.Module:
    torch.manual_seed(1)
    return get_model("se-cnn", **TINY_CNN).eval()


@pytest.fixture
def images() -> torch.Tensor:
    return torch.rand(4, 3, 16, 16, generator=torch.Generator().manual_seed(2))


# -- researcher-style Norse models (stepped with count_model(..., timesteps=T)) ----------


def _scaled(model: nn.Module, factor: float) -> nn.Module:
    """Scale every conv/linear weight (and Norse input/recurrent weights) so the model spikes."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.Conv2d | nn.Linear):
                module.weight.mul_(factor)
            for name in ("input_weights", "recurrent_weights"):
                weight = getattr(module, name, None)
                if isinstance(weight, torch.Tensor):
                    weight.mul_(factor)
    return model.eval()


class NorseResidualBlock(nn.Module):
    """conv -> LIFBoxCell -> conv, plus the block's input (a functional ``+``) -> LIFBoxCell."""

    def __init__(self, channels: int) -> None:
        import norse.torch as snn

        super().__init__()
        self.conv1 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.lif1 = snn.LIFBoxCell()
        self.conv2 = nn.Conv2d(channels, channels, 3, padding=1, bias=False)
        self.lif2 = snn.LIFBoxCell()

    def forward(self, x: torch.Tensor, state: tuple | None = None) -> tuple[torch.Tensor, tuple]:
        s1, s2 = state if state is not None else (None, None)
        z, s1 = self.lif1(self.conv1(x), s1)
        z, s2 = self.lif2(self.conv2(z) + x, s2)
        return z, (s1, s2)


def norse_models() -> dict[str, nn.Module]:
    """The models of issue 15 (Norse 1.1.0), small and scaled up so that they spike.

    Inputs: ``conv`` and ``box`` take ``[B, 1, 8, 8]`` images (static) or ``[T, B, 1, 8,
    8]`` events; ``residual`` takes ``[B, 2, 6, 6]`` spikes; ``recurrent`` ``[T, B, 12]``.
    """
    import norse.torch as snn

    torch.manual_seed(5)
    return {
        "conv": _scaled(
            snn.SequentialState(
                nn.Conv2d(1, 4, 3),
                snn.LIFCell(),
                nn.AvgPool2d(2),
                nn.Conv2d(4, 6, 2),
                snn.LIFCell(),
                nn.Flatten(),
                nn.Linear(6 * 2 * 2, 3),
                snn.LICell(),
            ),
            12.0,
        ),
        "box": _scaled(
            snn.SequentialState(
                nn.Conv2d(1, 4, 3, padding=1),
                snn.LIFBoxCell(),
                nn.AvgPool2d(2),
                nn.Flatten(),
                nn.Linear(4 * 4 * 4, 5),
                snn.LIFBoxCell(),
            ),
            20.0,
        ),
        "residual": _scaled(snn.SequentialState(NorseResidualBlock(2)), 40.0),
        "recurrent": _scaled(
            snn.SequentialState(snn.LIFRecurrentCell(12, 24), nn.Linear(24, 3), snn.LICell()),
            6.0,
        ),
    }


def norse_inputs(name: str, timesteps: int, batch: int = 3) -> tuple[torch.Tensor, str]:
    """``(inputs, input_mode)`` for a model of :func:`norse_models`."""
    generator = torch.Generator().manual_seed(7)
    if name == "conv":
        return torch.rand(batch, 1, 8, 8, generator=generator), "static"
    if name == "box":
        return (
            torch.rand(timesteps, batch, 1, 8, 8, generator=generator) < 0.4
        ).float(), "sequence"
    if name == "residual":
        return (torch.rand(batch, 2, 6, 6, generator=generator) < 0.5).float(), "static"
    return (torch.rand(timesteps, batch, 12, generator=generator) < 0.3).float(), "sequence"


@pytest.fixture
def norse() -> SimpleNamespace:
    """Builders of the researcher-style Norse models and their inputs."""
    return SimpleNamespace(models=norse_models, inputs=norse_inputs)
