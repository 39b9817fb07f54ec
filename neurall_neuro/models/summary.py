"""Parameter counts and weight footprints."""

from __future__ import annotations

from dataclasses import dataclass

from torch import nn


@dataclass(frozen=True)
class ModelSize:
    """Trainable parameters and their storage at fp32 (4 bytes) and int8 (1 byte)."""

    parameters: int
    fp32_bytes: int
    int8_bytes: int

    @property
    def fp32_megabytes(self) -> float:
        """Footprint in MB (10^6 bytes), the unit of the NeurALLNet paper's 1.35 MB."""
        return self.fp32_bytes / 1e6

    def describe(self) -> str:
        return f"{self.parameters:,} parameters, {self.fp32_megabytes:.2f} MB fp32, {self.int8_bytes / 1e6:.2f} MB int8"


def model_size(model: nn.Module) -> ModelSize:
    """Count trainable parameters (BatchNorm running statistics are not parameters)."""
    count = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return ModelSize(parameters=count, fp32_bytes=4 * count, int8_bytes=count)
