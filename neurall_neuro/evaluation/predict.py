"""Running a model over a dataset: class probabilities for every image."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader, Dataset

from neurall_neuro.progress import track


@dataclass
class Predictions:
    """Model outputs for a dataset, in dataset order.

    Attributes:
        probs: ``[N, K]`` softmax probabilities (float64).
        labels: ``[N]`` true labels.
        indices: ``[N]`` dataset indices (``ImageDataset`` items carry them).
    """

    probs: np.ndarray
    labels: np.ndarray
    indices: np.ndarray

    @property
    def predicted(self) -> np.ndarray:
        """Arg-max class of every image."""
        return self.probs.argmax(axis=1)

    def __len__(self) -> int:
        return len(self.labels)


def resolve_device(device: str | torch.device = "auto") -> torch.device:
    """``auto`` -> CUDA when available, else CPU; other values are passed to ``torch.device``."""
    if isinstance(device, torch.device):
        return device
    if device == "auto":
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    return torch.device(device)


@torch.no_grad()
def predict(
    model: nn.Module,
    dataset: Dataset,
    batch_size: int = 64,
    device: str | torch.device = "auto",
    amp: bool | None = None,
    description: str = "evaluating",
    progress: bool = True,
) -> Predictions:
    """Class probabilities of ``model`` (in eval mode) for every item of ``dataset``.

    Items are ``(image, label, index)`` as produced by
    :class:`~neurall_neuro.data.dataset.ImageDataset`. ``amp`` (default: on for CUDA)
    runs the forward pass under autocast; softmax is always taken in float32. Models with
    ``to_inference()`` (the SE-SNN) are run through that faster, bit-identical path.
    """
    dev = resolve_device(device)
    use_amp = (dev.type == "cuda") if amp is None else (amp and dev.type == "cuda")
    was_training = model.training
    model.eval().to(dev)
    # Spiking models offer a bit-identical, faster inference-only path.
    runner = model.to_inference() if hasattr(model, "to_inference") else model
    loader = DataLoader(dataset, batch_size=batch_size, shuffle=False, num_workers=0)
    probs, labels, indices = [], [], []
    batches = track(loader, description, total=len(loader)) if progress else loader
    try:
        for images, y, idx in batches:
            images = images.to(dev, non_blocking=True)
            with torch.autocast(device_type=dev.type, enabled=use_amp):
                logits = runner(images)
            probs.append(torch.softmax(logits.float(), dim=1).cpu())
            labels.append(torch.as_tensor(y))
            indices.append(torch.as_tensor(idx))
    finally:
        model.train(was_training)
    if not probs:
        return Predictions(np.zeros((0, 0)), np.zeros(0, dtype=int), np.zeros(0, dtype=int))
    return Predictions(
        probs=torch.cat(probs).double().numpy(),
        labels=torch.cat(labels).long().numpy(),
        indices=torch.cat(indices).long().numpy(),
    )
