"""``se-cnn``: the Residual SE-CNN baseline of the seed paper, trained from scratch.

Four residual stages of 32/64/128/256 filters. Each stage::

    x -> conv3x3 -> BN -> ReLU -> conv3x3 -> BN -> SE -> (+ shortcut) -> ReLU -> MaxPool2d(2)

where the shortcut is the identity, or a 1x1 convolution + BN when the width changes, and
SE is the standard sigmoid squeeze-and-excitation gate (reduction 16). The join
``+ shortcut`` is the parameterless module ``residual``
(:class:`~neurall_neuro.models.blocks.ResidualAdd`), so hooks see it. Then global
average pooling, dropout 0.5 and a linear classification head: multi-class softmax, or a
single sigmoid logit when ``num_classes == 2``. The binary head is returned as the two
logits ``[0, z]``, whose softmax equals ``[1 - sigmoid(z), sigmoid(z)]``, so training and
evaluation code treat every model the same way.
"""

from __future__ import annotations

from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn

from neurall_neuro.errors import ConfigError
from neurall_neuro.models.blocks import ResidualAdd
from neurall_neuro.models.se_block import SEBlock


@dataclass(frozen=True)
class SECNNConfig:
    """Configuration of the Residual SE-CNN."""

    num_classes: int = 4
    in_channels: int = 3
    input_size: int = 64
    channels: tuple[int, ...] = (32, 64, 128, 256)
    se: bool = True
    se_reduction: int = 16
    dropout: float = 0.5

    def __post_init__(self) -> None:
        if self.num_classes < 2:
            raise ConfigError(f"num_classes must be >= 2, got {self.num_classes}")
        if not self.channels or any(int(c) < 1 for c in self.channels):
            raise ConfigError(f"channels must be positive widths, got {self.channels!r}")
        if not 0.0 <= self.dropout < 1.0:
            raise ConfigError(f"dropout must be in [0, 1), got {self.dropout}")
        factor = 2 ** len(self.channels)
        if self.input_size % factor:
            raise ConfigError(
                f"input_size {self.input_size} must be divisible by {factor} (one 2x max-pool per stage)"
            )


class ResidualSEStage(nn.Module):
    """One residual block with SE attention followed by 2x2 max pooling."""

    def __init__(self, in_channels: int, out_channels: int, se: bool, reduction: int):
        super().__init__()
        self.conv1 = nn.Conv2d(in_channels, out_channels, 3, padding=1, bias=False)
        self.bn1 = nn.BatchNorm2d(out_channels)
        self.relu1 = nn.ReLU()
        self.conv2 = nn.Conv2d(out_channels, out_channels, 3, padding=1, bias=False)
        self.bn2 = nn.BatchNorm2d(out_channels)
        self.se = SEBlock(out_channels, mode="analog" if se else "none", reduction=reduction)
        if in_channels != out_channels:
            self.shortcut: nn.Module = nn.Sequential(
                OrderedDict(
                    conv=nn.Conv2d(in_channels, out_channels, 1, bias=False),
                    bn=nn.BatchNorm2d(out_channels),
                )
            )
        else:
            self.shortcut = nn.Identity()
        self.relu2 = nn.ReLU()
        self.pool = nn.MaxPool2d(2)
        # Registered last (no parameters, so no state_dict key): module listings keep the
        # layers above in their historical order.
        self.residual = ResidualAdd()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = self.bn2(self.conv2(self.relu1(self.bn1(self.conv1(x)))))
        y = self.se(y.unsqueeze(0)).squeeze(0)  # SEBlock works on [T, B, ...]; here T = 1
        return self.pool(self.relu2(self.residual(y, self.shortcut(x))))


class SECNN(nn.Module):
    """The Residual SE-CNN baseline (see the module docstring)."""

    model_name = "se-cnn"

    def __init__(self, config: SECNNConfig | None = None):
        super().__init__()
        self.config = config = config or SECNNConfig()
        widths = [int(c) for c in config.channels]
        stages: OrderedDict[str, nn.Module] = OrderedDict()
        previous = config.in_channels
        for index, width in enumerate(widths, start=1):
            stages[f"stage{index}"] = ResidualSEStage(
                previous, width, config.se, config.se_reduction
            )
            previous = width
        self.features = nn.Sequential(stages)
        self.pool = nn.AdaptiveAvgPool2d(1)
        self.flatten = nn.Flatten()
        self.dropout = nn.Dropout(config.dropout)
        self.binary = config.num_classes == 2
        self.fc = nn.Linear(previous, 1 if self.binary else config.num_classes)

    def forward(self, images: torch.Tensor) -> torch.Tensor:
        """Class logits ``[B, K]`` (for 2 classes: ``[0, z]`` with ``z`` the sigmoid logit)."""
        logits = self.fc(self.dropout(self.flatten(self.pool(self.features(images)))))
        if self.binary:
            logits = torch.cat([torch.zeros_like(logits), logits], dim=1)
        return logits
