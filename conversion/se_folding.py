r"""Calibrated folding of analog SE gates, and what it costs.

An analog SE block multiplies the spikes of channel :math:`c` by a sigmoid gate
:math:`g_t[c] \in (0, 1)` that depends on the current input. NIR has no product of two
signals, so export replaces every gate by its expectation over a calibration set,

.. math::
    \bar g[c] = \frac{1}{N T} \sum_{n=1}^{N} \sum_{t=1}^{T} g_t^{(n)}[c]

(computed with the dynamic model), and folds :math:`\bar g` into the input weights of
the next layer that mixes channels (the next stage's convolution, after an average pool,
or the head's affine layer, after global pooling): pooling is linear and per channel,
so :math:`W * \mathrm{pool}(\bar g \odot s) = (W \operatorname{diag}(\bar g)) *
\mathrm{pool}(s)`. The folded graph has no SE nodes at all. It is an approximation of
the dynamic model: :func:`folding_report` measures the accuracy and prediction agreement
of both on given images.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass
from typing import Any

import nir
import numpy as np
import torch
from torch import nn

from neurall_neuro.errors import ConversionError
from neurall_neuro.models.se_block import SEBlock
from neurall_neuro.progress import track

ImageSource = torch.Tensor | Iterable[Any]


def iter_image_batches(images: ImageSource, batch_size: int = 32) -> Iterator[torch.Tensor]:
    """Batches ``[B, C, H, W]`` from a tensor ``[N, C, H, W]`` or an iterable of batches
    (tensors, or tuples/lists whose first element is the image tensor, as a DataLoader
    over :class:`~neurall_neuro.data.dataset.ImageDataset` yields)."""
    if isinstance(images, torch.Tensor):
        if images.dim() != 4:
            raise ConversionError(
                f"calibration images must be a [N, C, H, W] tensor, got shape {tuple(images.shape)}"
            )
        yield from images.split(batch_size)
        return
    for item in images:
        batch = item[0] if isinstance(item, (tuple, list)) else item
        if not isinstance(batch, torch.Tensor):
            raise ConversionError(
                f"calibration data must yield image tensors, got {type(batch).__name__}"
            )
        yield batch.unsqueeze(0) if batch.dim() == 3 else batch


def analog_se_blocks(model: nn.Module) -> dict[str, SEBlock]:
    """Analog SE blocks of ``model`` by module path (e.g. ``body.se3``)."""
    return {
        path: module
        for path, module in model.named_modules()
        if isinstance(module, SEBlock) and module.mode == "analog"
    }


@torch.no_grad()
def calibrate_se_gates(
    model: nn.Module, images: ImageSource, batch_size: int = 32
) -> tuple[dict[str, np.ndarray], int]:
    """Expected gate per channel of every analog SE block, over images and timesteps.

    Returns ``({path: gate[C] (float64)}, number of images)``. ``model`` must offer
    ``run(images)`` (the SE-SNN); gates are recorded by forward hooks on the SE blocks.
    """
    blocks = analog_se_blocks(model)
    if not blocks:
        return {}, 0
    sums = {
        path: torch.zeros(block.channels, dtype=torch.float64) for path, block in blocks.items()
    }
    counts = dict.fromkeys(blocks, 0)
    handles = []

    def make_hook(path: str):
        def hook(module: SEBlock, inputs: tuple[torch.Tensor, ...], output: torch.Tensor) -> None:
            gate = module.gate_values(inputs[0])  # [T, B, C, 1, 1]
            sums[path] += gate.double().sum(dim=(0, 1)).flatten().cpu()
            counts[path] += gate.shape[0] * gate.shape[1]

        return hook

    was_training = model.training
    model.eval()
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    n_images = 0
    try:
        for path, block in blocks.items():
            handles.append(block.register_forward_hook(make_hook(path)))
        for batch in track(iter_image_batches(images, batch_size), "calibrating SE gates"):
            model.run(batch.to(device=device, dtype=torch.float32))
            n_images += batch.shape[0]
    finally:
        for handle in handles:
            handle.remove()
        model.train(was_training)
    if n_images == 0:
        raise ConversionError("the calibration set is empty; give at least one image")
    return {path: (sums[path] / counts[path]).numpy() for path in blocks}, n_images


@dataclass
class FoldingReport:
    """Cost of folding: the dynamic model next to the folded graph on the same images."""

    n_images: int
    accuracy_dynamic: float
    accuracy_folded: float
    agreement: float
    max_abs_score_difference: float

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)

    def __str__(self) -> str:
        return (
            f"SE folding on {self.n_images} images: accuracy dynamic {self.accuracy_dynamic:.4f}, "
            f"folded {self.accuracy_folded:.4f} (change {self.accuracy_folded - self.accuracy_dynamic:+.4f}); "
            f"prediction agreement {self.agreement:.4f}; max |score difference| "
            f"{self.max_abs_score_difference:.4g}"
        )


@torch.no_grad()
def folding_report(
    model: nn.Module,
    folded_graph: nir.NIRGraph,
    images: torch.Tensor,
    labels: torch.Tensor | Iterable[int],
    batch_size: int = 64,
) -> FoldingReport:
    """Accuracy of the dynamic ``model`` and of ``folded_graph`` (run by the NIR runtime)
    on ``images`` ``[N, C, H, W]`` with integer ``labels``, and their agreement."""
    from conversion.nir_runtime import load_nir

    labels = torch.as_tensor(list(labels) if not isinstance(labels, torch.Tensor) else labels)
    if images.dim() != 4 or labels.shape != (images.shape[0],):
        raise ConversionError(
            f"folding_report needs images [N, C, H, W] and labels [N]; got {tuple(images.shape)} "
            f"and {tuple(labels.shape)}"
        )
    device = next((p.device for p in model.parameters()), torch.device("cpu"))
    runtime = load_nir(folded_graph).to(device)
    model.eval()
    timesteps = model.config.timesteps if hasattr(model, "config") else None
    dynamic_scores, folded_scores = [], []
    for batch in images.split(batch_size):
        batch = batch.to(device=device, dtype=torch.float32)
        dynamic_scores.append(model.run(batch).logits.cpu())
        folded_scores.append(runtime.run(batch, timesteps=timesteps).output.mean(0).cpu())
    dynamic = torch.cat(dynamic_scores)
    folded = torch.cat(folded_scores)
    pred_dynamic, pred_folded = dynamic.argmax(1), folded.argmax(1)
    return FoldingReport(
        n_images=int(images.shape[0]),
        accuracy_dynamic=float((pred_dynamic == labels).float().mean()),
        accuracy_folded=float((pred_folded == labels).float().mean()),
        agreement=float((pred_dynamic == pred_folded).float().mean()),
        max_abs_score_difference=float((dynamic - folded).abs().max()),
    )
