"""Accuracy cost of Loihi quantisation: the fixed-point network (run bit-exactly on
``loihi-emu``) against the float model on the same labelled images."""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch

from hw_targets.loihi.network import LoihiNetwork
from hw_targets.registry import get_target


@dataclass
class QuantizationAccuracy:
    """Float vs fixed-point accuracy and their prediction agreement on ``n`` images."""

    n: int
    float_accuracy: float
    quantized_accuracy: float
    agreement: float

    def __str__(self) -> str:
        return (
            f"quantised accuracy {self.quantized_accuracy:.3f} vs float {self.float_accuracy:.3f} "
            f"(prediction agreement {self.agreement:.3f}, n={self.n})"
        )

    def to_dict(self) -> dict[str, float]:
        return asdict(self)


def quantization_accuracy(
    model: torch.nn.Module,
    network: LoihiNetwork,
    images: torch.Tensor,
    labels: torch.Tensor,
    timesteps: int,
    device: str = "cpu",
) -> QuantizationAccuracy:
    """Run ``network`` on the Loihi emulator and ``model`` in float; compare predictions."""
    model.eval()
    with torch.no_grad():
        float_pred = model(images).argmax(1)
    with get_target("loihi-emu").compile(network, timesteps=timesteps, device=device) as deployed:
        fixed_pred = torch.as_tensor(deployed.run(images).predictions())
    return QuantizationAccuracy(
        n=len(labels),
        float_accuracy=float((float_pred == labels).float().mean()),
        quantized_accuracy=float((fixed_pred == labels).float().mean()),
        agreement=float((fixed_pred == float_pred).float().mean()),
    )
