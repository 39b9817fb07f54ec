"""Class-mean saliency: where a model looks on average, without showing any image.

For each class ``k`` and method (Grad-CAM, SAM), the map of every image of that class
(explained for its *true* class, each scaled to [0, 1] as in
:class:`~neurall_neuro.explain.gradcam.Explanation`) is averaged:

    M_k(x, y) = (1 / |I_k|) * sum_{i in I_k} map_i(x, y)

The figure carries no pixel of any input image, so it can be published where the
images themselves may not be (licensed datasets); per-image overlays are made locally
with ``neurall explain``.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import torch

from neurall_neuro.errors import ConfigError
from neurall_neuro.explain.gradcam import grad_cam
from neurall_neuro.explain.runner import methods_for
from neurall_neuro.explain.sam import sam
from neurall_neuro.figures import pyplot, save_figure


@dataclass
class ClassMeanMaps:
    """``maps[method]``: ``[K, H, W]`` mean maps; ``counts[k]``: images averaged for class k."""

    maps: dict[str, torch.Tensor]
    counts: list[int]
    class_names: list[str]


def class_mean_maps(
    model: torch.nn.Module,
    images: torch.Tensor,
    labels: torch.Tensor,
    class_names: Sequence[str],
    method: str = "all",
    batch_size: int = 32,
) -> ClassMeanMaps:
    """Mean saliency map per true class (see the module docstring) over ``images``."""
    if images.shape[0] != labels.shape[0] or images.shape[0] == 0:
        raise ConfigError(
            f"need one label per image and at least one image; got {images.shape[0]} images "
            f"and {labels.shape[0]} labels"
        )
    k, size = len(class_names), tuple(images.shape[-2:])
    methods = methods_for(model, method)
    sums = {m: torch.zeros(k, *size) for m in methods}
    counts = torch.bincount(labels, minlength=k)[:k]
    for start in range(0, images.shape[0], batch_size):
        x, y = images[start : start + batch_size], labels[start : start + batch_size]
        for m in methods:
            maps = (grad_cam(model, x, target=y) if m == "gradcam" else sam(model, x)).maps
            sums[m].index_add_(0, y, maps.detach().float().cpu())
    denom = counts.clamp(min=1).view(k, 1, 1).float()
    return ClassMeanMaps(
        {m: s / denom for m, s in sums.items()}, counts.tolist(), list(class_names)
    )


def plot_class_mean_maps(result: ClassMeanMaps, path: str | Path, title: str = "") -> Path:
    """A grid (rows: methods, columns: classes) of the mean maps on a shared [0, 1] scale."""
    plt = pyplot()

    methods = list(result.maps)
    k = len(result.class_names)
    fig, axes = plt.subplots(
        len(methods), k, figsize=(2.3 * k + 0.8, 2.4 * len(methods) + 0.6), squeeze=False
    )
    shown = None
    for row, m in enumerate(methods):
        for col, name in enumerate(result.class_names):
            ax = axes[row][col]
            shown = ax.imshow(result.maps[m][col].numpy(), cmap="jet", vmin=0.0, vmax=1.0)
            ax.set_title(f"{name} (n={result.counts[col]})", fontsize=9)
            ax.set_xticks([])
            ax.set_yticks([])
            if col == 0:
                ax.set_ylabel("Grad-CAM" if m == "gradcam" else "SAM", fontsize=9)
    fig.colorbar(shown, ax=axes.ravel().tolist(), fraction=0.02, pad=0.02)
    fig.suptitle(title or "mean saliency per true class (no image content)", fontsize=10)
    return save_figure(fig, path, dpi=100, tight=False)
